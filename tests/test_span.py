"""An ingested trace's span is the trace's: span.json, the cut from it, test_days checked against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from simulation.config import build_config
from simulation.errors import ConfigError, RunDirError
from simulation.pipeline import StageContext, run_stage
from simulation.rundir import RunDir
from simulation.span import time_cut

# MovieLens latest-small's first and last days: 1996-03-29 .. 2018-09-24 = 8215 days
EVENTS = [{"user_id": "u1", "content_id": "m1", "timestamp": "1996-03-29 10:00:00"},
          {"user_id": "u2", "content_id": "m2", "timestamp": "2010-06-01 12:00:00"},
          {"user_id": "u1", "content_id": "m2", "timestamp": "2018-09-24 23:59:59"}]


def _ingest_config(trace: Path, test_days: int) -> dict:
    return {"workload": {"source": "ingest", "ingest_path": str(trace), "ingest_format": "jsonl", "edges": 2},
            "split": {"test_days": test_days}, "federated": {"min_nodes": 1}}


def _ingest(tmp_path: Path, test_days: int) -> tuple[StageContext, RunDir]:
    trace = tmp_path / "long.jsonl"
    trace.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    run = RunDir(tmp_path / "run")
    ctx = StageContext(cfg=build_config(_ingest_config(trace, test_days)), run=run, console=Console(quiet=True))
    return ctx, run


def test_a_22_year_trace_is_split_on_its_own_span(tmp_path: Path) -> None:
    ctx, run = _ingest(tmp_path, 1643)  # the last 20% of 8215 days; workload.days stays the default 28
    out = run_stage("generate", ctx)
    assert json.loads(run.span.read_text()) == {"start_date": "1996-03-29", "days": 8215, "trace": "long.jsonl"}
    assert (out["workload"]["days"], out["workload"]["trace"]) == (8215, "long.jsonl")
    assert (out["workload"]["train_events"], out["workload"]["test_events"]) == (2, 1)
    assert time_cut(ctx.cfg, run) == "2014-03-27 00:00:00"  # 1996-03-29 + (8215 - 1643) days


def test_test_days_that_do_not_fit_the_trace_name_the_key_and_the_span(tmp_path: Path) -> None:
    ctx, run = _ingest(tmp_path, 9000)
    with pytest.raises(ConfigError, match=r"split.test_days = 9000 does not fit the long.jsonl span of 8215 days"):
        run_stage("generate", ctx)
    assert json.loads(run.span.read_text())["days"] == 8215  # the trace's span is recorded all the same
    with pytest.raises(ConfigError, match="split.test_days = 9000"):
        time_cut(ctx.cfg, run)


def test_a_test_fraction_is_a_share_of_the_trace_span_and_names_itself_when_it_does_not_fit(tmp_path: Path) -> None:
    ctx, run = _ingest(tmp_path, 1)
    fraction = {**_ingest_config(tmp_path / "long.jsonl", 1), "split": {"test_fraction": 0.2}}
    out = run_stage("generate", StageContext(cfg=build_config(fraction), run=run, console=Console(quiet=True)))
    assert (out["workload"]["train_events"], out["workload"]["test_events"]) == (2, 1)
    assert time_cut(build_config(fraction), run) == "2014-03-27 00:00:00"  # floor(8215 x 0.2) = 1643 days
    tiny = {**fraction, "split": {"test_fraction": 1e-6}}
    assert time_cut(build_config(tiny), run) == "2018-09-24 00:00:00"  # at least one test day
    whole = {**fraction, "split": {"test_fraction": 1.0}}
    with pytest.raises(ConfigError, match=r"split.test_fraction = 1 \(8215 days\) does not fit the long.jsonl span"):
        time_cut(build_config(whole), run)
    with pytest.raises(ConfigError, match=r"split.test_fraction = 1 \(7 days\) leaves no training period"):
        build_config({"workload": {"days": 7}, "split": {"test_fraction": 1.0}})


def test_an_ingested_run_without_span_json_is_refused_not_cut_on_workload_days(tmp_path: Path) -> None:
    ctx, run = _ingest(tmp_path, 7)
    with pytest.raises(RunDirError, match="span.json is missing"):
        time_cut(ctx.cfg, run)


def test_generated_runs_keep_the_configured_span(tmp_path: Path) -> None:
    cfg = build_config({"workload": {"days": 6, "start_date": "2025-04-01"}, "split": {"test_days": 2}})
    assert time_cut(cfg, RunDir(tmp_path)) == "2025-04-05 00:00:00"
    with pytest.raises(ConfigError, match="workload.days = 6"):
        build_config({"workload": {"days": 6}, "split": {"test_days": 6}})


@pytest.mark.slow
def test_features_cut_an_ingested_trace_on_its_span(spark: object, tmp_path: Path) -> None:
    ctx, run = _ingest(tmp_path, 1643)
    run_stage("generate", ctx)
    ctx.cfg = build_config({**_ingest_config(tmp_path / "long.jsonl", 1643),
                            "features": {"spark_master": "local[2]", "shuffle_partitions": 2}})
    out = run_stage("features", ctx)
    assert out["features"]["cut"] == "2014-03-27 00:00:00"
    assert (out["workload"]["train_events"], out["workload"]["test_events"]) == (2, 1)

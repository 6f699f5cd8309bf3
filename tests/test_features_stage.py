"""The features stage through the pipeline (config -> cut -> results.json) and Parquet input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from simulation.config import build_config
from simulation.pipeline import StageContext, run_stage
from simulation.rundir import RunDir
from simulation.span import time_cut
from spark_features.job import FeatureSettings, run_features
from spark_features.memory import QUICK_JIT_OPTIONS
from tests.conftest import require
from tests.fixtures_spark import content_id, write_catalog
from tests.test_features_job import CUT, build

ROOT = Path(__file__).resolve().parent.parent
RAW = {"run": {"name": "tiny"},
       "workload": {"edges": 2, "items": 20, "days": 6, "start_date": "2025-04-01"},
       "split": {"test_days": 2},
       "features": {"spark_master": "local[2]", "shuffle_partitions": 2, "history_len": 3, "markov_top_n": 2},
       "cache": {"capacity": 5}}


def test_cut_is_start_plus_train_days(tmp_path: Path) -> None:
    assert time_cut(build_config(RAW), RunDir(tmp_path)) == CUT == "2025-04-05 00:00:00"


@pytest.mark.slow
def test_stage_reports_counts_in_results_json(spark: Any, tmp_path: Path) -> None:
    run = build(tmp_path)
    ctx = StageContext(cfg=build_config(RAW), run=RunDir(tmp_path), console=Console(quiet=True))
    out = run_stage("features", ctx)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["workload"] == out["workload"]
    w = out["workload"]
    dirty = sum(sum(log.reasons.values()) for log in run.edges.values())
    assert sum(w["quarantined"].values()) == dirty
    assert w["quarantined_per_edge"]["edge-01"] == dict(run.edges["edge-01"].reasons)
    assert w["train_events"] + w["test_events"] + dirty == sum(len(log.lines) for log in run.edges.values())
    assert out["features"]["per_edge"]["edge-00"]["test"] == 4
    assert "features_s" in saved["timings"]
    assert spark.sparkContext._jsc is not None  # the shared session survives the stage
    assert not (tmp_path / "features" / "centralized").exists()  # pooled tables are opt-in
    pooled = {**RAW, "features": {**RAW["features"], "pooled_tables": True}}
    run_stage("features", StageContext(cfg=build_config(pooled), run=RunDir(tmp_path), console=Console(quiet=True)))
    assert (tmp_path / "features" / "centralized" / "markov").is_dir()


@pytest.mark.slow
def test_parquet_logs_are_validated_the_same_way(spark: Any, tmp_path: Path) -> None:
    write_catalog(tmp_path, 10)
    folder = tmp_path / "logs" / "edge=edge-00"
    folder.mkdir(parents=True)
    table = pa.table({
        "user_id": ["U1", "U1", "U1", "U1"],
        "device": ["TV", "TV", "web", "TV"],
        "content_id": [content_id(1), content_id(2), content_id(3), content_id(4)],
        "duration": pa.array([30, -1, 20, 10], pa.int64()),
        "timestamp": ["2025-04-01 10:00:00", "2025-04-01 10:05:00", "2025-04-01 10:30:00",
                      "2025-04-06 10:00:00"],
        "edge_id": ["edge-00"] * 4,
    })
    pq.write_table(table, folder / "part-00000.parquet")
    report = run_features(spark, FeatureSettings(run_dir=tmp_path, cut=CUT, history_len=2, centralized=False))
    e = report["edges"]["edge-00"]
    assert (e["input"], e["train"], e["test"], e["by_reason"]) == (4, 2, 1, {"negative_duration": 1})
    q = pq.read_table(tmp_path / "quarantine").to_pylist()
    assert q[0]["seq"] == 1 and json.loads(q[0]["raw"])["duration"] == -1
    ex = pq.read_table(tmp_path / "features" / "examples").to_pylist()
    assert [(r["hist"], r["label"]) for r in ex] == [([-1, 1], 3)]


@pytest.mark.slow
def test_spark_submit_runs_the_job(spark: Any, tmp_path: Path) -> None:
    """`spark-submit spark_features/features_spark.py ...` (its own JVM) on a subset of edges."""
    submit = Path(sys.executable).parent / "spark-submit"
    require(submit.exists(), "spark-submit next to the venv's python", "pip install pyspark")
    build(tmp_path)
    env = {**os.environ, "PATH": f"{submit.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYSPARK_PYTHON": sys.executable}
    # a tiny job: the client JIT alone starts it faster (spark_features/memory.py, QUICK_JIT_OPTIONS)
    proc = subprocess.run([str(submit), "--master", "local[1]", "--driver-memory", "512m",
                           "--driver-java-options", QUICK_JIT_OPTIONS, "spark_features/features_spark.py", "--run-dir", str(tmp_path), "--cut", "2025-04-05",
                           "--edges", "edge-01", "--shuffle-partitions", "2", "--no-centralized"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # spark-submit merges the driver's stderr (our logs) into its stdout: take the JSON summary line.
    summary = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith('{"input"')))
    assert summary["test_events"] == 1 and summary["quarantined"]["per_edge"] == {"edge-01": 17}
    assert not (tmp_path / "features" / "examples" / "edge_id=edge-00").exists()


STOP_AND_RESTART = """
import psutil
from pyspark import SparkContext
from spark_features.session import get_spark, stop_spark
spark = get_spark("local[1]", 1, quick_jit=True)
jvm = psutil.Process(SparkContext._gateway.proc.pid)
assert "java" in jvm.name(), jvm.name()
stop_spark()
assert not jvm.is_running() or jvm.status() == psutil.STATUS_ZOMBIE, "JVM still running"
spark = get_spark("local[1]", 1, quick_jit=True)
assert spark.range(5).count() == 5
second = SparkContext._gateway.proc.pid
stop_spark()
print("ok", jvm.pid, second)
"""


@pytest.mark.slow
def test_stop_spark_ends_the_jvm_and_a_new_session_starts() -> None:
    """stop_spark frees the JVM (stop() alone leaves it resident for the rest of `edgecache run`)."""
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_GATEWAY_PORT"}
    proc = subprocess.run([sys.executable, "-c", STOP_AND_RESTART], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.split()[1:3]
    assert first != second

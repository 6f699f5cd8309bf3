"""The bench harness: a tiny benchmark through a real subprocess to bench.json; the parsers and
the growth figures on hand-computed inputs. No wall-clock time is ever asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.bench_kinds import _report as kinds_report
from benchmarks.bench_replay import figures as replay_figures
from benchmarks.harness import Bench, figure, figures_of, run_all
from benchmarks.report import write_report
from benchmarks.scale import figures as scale_figures
from benchmarks.scale import slope
from benchmarks.suite import benches, select

TINY = """
import json, sys
rows = [{"figure": "tiny rate", "value": 50.0, "unit": "x/s", "baseline": "floor", "baseline_value": 200.0,
         "ratio": 0.25}]
json.dump({"figures": rows, "buffer": len(bytearray(20 * 1024 * 1024))}, open(sys.argv[1], "w"))
"""

def _payload(results: dict) -> dict:
    return {"mode": "test", "started": "now", "wall_s": 1.0, "results": results, "load_end": [0, 0, 0],
            "machine": {"cpus": 2, "memory_gb": 1, "load_avg_1_5_15": [0, 0, 0]}}


def test_harness_runs_a_tiny_benchmark_and_writes_bench_json(tmp_path: Path) -> None:
    ok = Bench("tiny", (sys.executable, "-c", TINY, "{json}"), timeout_s=60)
    broken = Bench("broken", (sys.executable, "-c", "raise SystemExit(3)"), timeout_s=60)
    results = run_all([ok, broken], tmp_path / "out")
    md = write_report(_payload(results), tmp_path / "bench.json", tmp_path / "out")
    written = json.loads((tmp_path / "bench.json").read_text())
    tiny = written["results"]["tiny"]
    assert tiny["returncode"] == 0 and "error" not in tiny
    assert tiny["figures"][0]["ratio"] == 0.25
    assert tiny["peak_rss_mb"] > 0 and tiny["wall_s"] > 0
    assert written["results"]["broken"]["returncode"] == 3  # a failed benchmark is kept, not fatal
    assert "exit 3" in written["results"]["broken"]["error"]
    assert "| tiny | tiny rate | 50 | x/s | floor | 200 | 0.25 |" in md.read_text()


def test_figure_ratio_is_value_over_baseline() -> None:
    assert figure("f", 3.0, "s", "b", 2.0)["ratio"] == 1.5
    assert figure("f", 3.0, "s", "b", 0.0)["ratio"] != figure("f", 3.0, "s", "b", 0.0)["ratio"]  # nan


def test_replay_figures_take_each_ratio_within_one_round() -> None:
    """Round 2 is faster overall but round 1 has the better predictive/raw ratio: each ratio keeps its round."""
    pred, raw, lcs = "predictive replay (Redis demand, prefetch)", "raw pipelined GETs", "libCacheSim LRU"
    lock, alone = "3 side-info models served in lockstep", "the same served one after the other"
    rounds = [({pred: 2.0, raw: 1.0, lcs: 0.1, lock: 4.0, alone: 8.0}, {pred: 0.4673}),
              ({pred: 1.5, raw: 0.5, lcs: 0.05, lock: 2.0, alone: 3.0}, {pred: 0.4673})]
    res = replay_figures(rounds, 100_000, 40_000)
    rows = {(f["figure"], f["baseline"]): f for f in res["figures"]}
    assert rows[(pred, raw)]["ratio"] == 0.5 and rows[(pred, raw)]["value"] == 50_000
    assert rows[(pred, raw)]["note"] == "best of 2 rounds; range 0.333-0.5"
    assert rows[(pred, lcs)]["ratio"] == 0.05
    assert rows[(raw, lcs)]["ratio"] == 0.1
    assert res["req_per_s"][pred] == pytest.approx(100_000 / 1.5) and res["hit_ratio"][pred] == 0.4673
    assert rows[(lock, alone)]["ratio"] == 2.0 and rows[(lock, alone)]["value"] == 10_000  # round 1, 40k requests
    assert (lock, raw) not in rows and (alone, lcs) not in rows


def test_kinds_figures_are_against_pooled_and_the_scoring_floor() -> None:
    import argparse
    trained = {k: {"seconds_by_round": [9.0, s, s], "steady_s_per_round": s, "hit_at_k": 0.5}
               for k, s in (("pooled", 2.0), ("sasrec", 5.0))}
    res = kinds_report(argparse.Namespace(rounds=3, items=3000, users=200, history_len=10, rows=20000), trained,
                       {"pooled": 40_000.0, "sasrec": 10_000.0}, {"blocked": 80_000.0, "one_block": 20_000.0})
    rows = {f["figure"]: f for f in res["figures"]}
    assert rows["sasrec steady s/round, 4 edges"]["ratio"] == 2.5
    assert "pooled steady s/round, 4 edges" not in rows  # pooled is the baseline, not a figure
    assert rows["pooled inference, 3000 items, k=3"]["ratio"] == 0.5
    assert rows["sasrec inference, 3000 items, k=3"]["ratio"] == 0.125
    assert res["kinds"]["sasrec"]["inference_rows_per_s"] == 10_000
    one = rows["pooled inference, 3000 items, k=3, vs one block"]
    assert one["ratio"] == 2.0 and one["baseline"] == "bare scoring matmul + top-k, all 20000 rows in one block"
    assert "sasrec inference, 3000 items, k=3, vs one block" not in rows


def test_scale_slope_and_linear_extrapolation() -> None:
    assert slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert slope([1, 10, 100], [5, 5, 5]) == pytest.approx(0.0)
    rows = [{"axis": "events", "value": v, "stages": {"generate": {"s": v / 1e5, "peak_rss_mb": 100.0}}}
            for v in (250_000, 1_000_000, 4_000_000)]
    rows.append({"axis": "edges", "value": 4, "stages": {"train": {"s": 10.0, "peak_rss_mb": 1.0}}})
    rows.append({"axis": "edges", "value": 16, "stages": {"train": {"s": 15.0, "peak_rss_mb": 1.0}}})
    figs = {f["figure"]: f for f in scale_figures(rows)}
    assert figs["scale generate time vs events: log-log slope"]["ratio"] == pytest.approx(1.0)
    assert figs["scale generate peak RSS vs events: log-log slope"]["value"] == pytest.approx(0.0)
    assert figs["scale generate time @ 4M events"]["ratio"] == pytest.approx(1.0)  # vs 1M point x 4
    assert figs["scale train time @ 16 edges"]["ratio"] == 1.5


def test_suite_selection_and_quick_mode() -> None:
    names = [b.name for b in benches(quick=False)]
    assert names[:2] == ["workload", "features"] and {"federated_64", "kinds", "replay", "e2e", "scale"} <= set(names)
    assert [b.name for b in select(benches(quick=True), ["federated"])] == ["federated_4", "federated_16"]
    with pytest.raises(SystemExit):
        select(benches(quick=True), ["nope"])
    assert figures_of({"a": {"figures": [{"figure": "x"}]}, "b": {}}) == [{"bench": "a", "figure": "x"}]
    scale = {b.name: b for b in benches(quick=False)}["scale"]
    scale_16m = {b.name: b for b in benches(quick=False, features_16m=True)}["scale"]
    assert "--features-16m" not in scale.argv and "--features-16m" in scale_16m.argv


@pytest.mark.slow
def test_real_workload_benchmark_through_the_harness(tmp_path: Path) -> None:
    """bench_workload.py --json at a tiny size, as `python -m benchmarks` runs it."""
    bench = next(b for b in benches(quick=True) if b.name == "workload")
    argv = tuple("20000" if a == "250000" else a for a in bench.argv)
    res = run_all([Bench("workload", argv, 300)], tmp_path)["workload"]
    assert "error" not in res, res.get("error")
    ratios = [f["ratio"] for f in res["figures"]]
    assert len(ratios) == 3 and all(r > 0 for r in ratios)


def test_report_sections_name_the_dominant_stage_and_extrapolate(tmp_path: Path) -> None:
    e2e = {"config": "default.toml", "overrides": [], "events": 1000,
           "timings": {"generate_s": 1.0, "features_s": 3.0, "train_s": 6.0, "train_round_mean_s": 0.5,
                       "total_s": 10.0},
           "stage_peak_rss_mb": {"train": 300.0}, "stage_peak_processes": {"train": [["java", 200.0]]}}
    scale = {"points": [{"axis": "events", "value": v, "stages": {"features": {"s": s, "wall_s": s,
                                                                               "peak_rss_mb": 10.0}}}
                        for v, s in ((1_000_000, 10.0), (4_000_000, 40.0))]}
    md = write_report(_payload({"e2e": e2e, "scale": scale}), tmp_path / "bench.json", tmp_path).read_text()
    assert "Dominant stage: **train** (60% of the time)" in md
    assert "Spark JVM is still resident during train" in md
    assert "10.0 s per extra million events" in md and "about 160 s at 16M" in md
    assert (tmp_path / "scale.png").stat().st_size > 0

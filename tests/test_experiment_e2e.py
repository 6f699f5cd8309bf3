"""The smoke experiment end to end through the CLI: the results.json contract, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulation.config import ALL_POLICIES
from tests.conftest import EXPERIMENTS, ROOT

POLICY_KEYS = {"hit_ratio", "byte_hit_ratio", "requests", "prefetch_bytes", "prefetch_precision"}
TIMING_KEYS = {"generate_s", "features_s", "train_s", "replay_s", "total_s"}


def run_smoke(out: Path, *overrides: str) -> dict[str, Any]:
    args = [sys.executable, "-m", "simulation.cli", "run", "-c", str(EXPERIMENTS / "smoke.toml"),
            "-o", str(out), *[a for o in overrides for a in ("--set", o)]]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads((out / "results.json").read_text()))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("smoke") / "run"
    return out, run_smoke(out, "cache.capacity=9")


def without_timings(value: Any) -> Any:
    """The results with every wall-clock figure removed (the only thing allowed to differ)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if k not in ("timings", "seconds") and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_results_json_matches_the_design_contract(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, r = smoke
    assert r["config"]["cache"]["capacity"] == 9
    assert "capacity = 9" in (out / "config.toml").read_text()
    w = r["workload"]
    assert {"events", "users", "items", "edges", "train_events", "test_events", "quarantined"} <= set(w)
    assert w["lines"] == w["train_events"] + w["test_events"] + sum(w["quarantined"].values())
    fed = r["federated"]
    assert fed["strategy"] == "fedavg" and len(fed["rounds"]) == 3
    assert {"round", "train_loss", "eval_hit_at_k"} <= set(fed["rounds"][0])
    assert set(ALL_POLICIES) <= set(r["policies"])
    assert fed["itemcf"]["status"] == "ok" and fed["itemcf"]["replies"] == 3, fed["itemcf"]
    quality = r["prediction_quality"]
    assert {"popularity", "markov_sql", "itemcf", "federated"} <= set(quality)
    assert quality["itemcf"]["overall"]["requests"] > 0 and 0 <= quality["itemcf"]["overall"]["hit_at_k"] <= 1
    edges = [f"edge-{i:02d}" for i in range(3)]
    for name, entry in r["policies"].items():
        assert set(entry["overall"]) >= POLICY_KEYS, name
        assert sorted(entry["per_edge"]) == edges, name
        for stats in entry["per_edge"].values():
            assert set(stats) >= POLICY_KEYS, name
        assert entry["overall"]["requests"] == w["test_events"], name
    assert set(r["timings"]) >= TIMING_KEYS
    assert (out / "report.html").stat().st_size > 0 and (out / "report.md").stat().st_size > 0


@pytest.mark.slow
def test_belady_is_never_beaten_by_a_reactive_policy(smoke: tuple[Path, dict[str, Any]]) -> None:
    policies = smoke[1]["policies"]
    for edge, stats in policies["belady"]["per_edge"].items():
        for name in ("lru", "lfu", "arc", "s3fifo", "wtinylfu"):
            assert policies[name]["per_edge"][edge]["hits"] <= stats["hits"], (name, edge)


@pytest.mark.slow
def test_same_seed_same_results(smoke: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    again = run_smoke(tmp_path / "again", "cache.capacity=9")
    assert without_timings(again) == without_timings(smoke[1])

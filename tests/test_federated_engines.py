"""Both Flower engines end to end on 3 tiny edges: rounds, checkpoints, resume, failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from aggregator.privacy import account
from edge_nodes.learning.model import load_params
from simulation.config import ExperimentConfig, build_config
from simulation.errors import TrainingFailed
from simulation.pipeline import StageContext, run_stage
from simulation.rundir import RunDir
from simulation.training.federation import run_federation
from simulation.training.plan import plan_federation
from tests.fixtures_federated import SyntheticRun

pytestmark = pytest.mark.slow


def _cfg(run: SyntheticRun, **federated: Any) -> ExperimentConfig:
    return build_config({
        "run": {"seed": 3}, "workload": {"edges": len(run.edges), "items": run.n_items},
        "features": {"history_len": run.history_len}, "cache": {"capacity": 10},
        "model": {"dim": 8, "batch_size": 64, "lr": 0.05},
        "federated": {"rounds": 3, "min_nodes": 2, "baselines": False, **federated}})


def _stage(run: SyntheticRun, cfg: ExperimentConfig) -> dict[str, Any]:
    ctx = StageContext(cfg=cfg, run=RunDir(run.root), console=Console(quiet=True))
    run_stage("train", ctx)
    return ctx.run.read_results()


def _checkpoints(run: SyntheticRun) -> list[str]:
    return sorted(p.name for p in (run.root / "models").glob("round-*.npz"))


def test_simulation_engine_trains_checkpoints_and_survives_a_failed_edge(synthetic_run: SyntheticRun) -> None:
    cfg = _cfg(synthetic_run, fail_edges=["edge-01"], fail_rounds=[2], personalize_epochs=1, baselines=True)
    fed = _stage(synthetic_run, cfg)["federated"]
    assert [r["round"] for r in fed["rounds"]] == [1, 2, 3]
    assert [r["failures"] for r in fed["rounds"]] == [0, 1, 0]
    assert fed["rounds"][1]["replies"] == 2 and fed["rounds"][1]["aggregated"]
    assert fed["rounds"][-1]["train_loss"] < fed["rounds"][0]["train_loss"]
    assert _checkpoints(synthetic_run) == ["round-1.npz", "round-2.npz", "round-3.npz"]
    params, spec = load_params(synthetic_run.root / "models" / "round-3.npz")
    assert spec.n_items == synthetic_run.n_items
    for name in ("local_only", "centralized"):
        assert 0.0 <= fed[name]["eval_hit_at_k"] <= 1.0 and set(fed[name]["per_edge"]) == set(synthetic_run.edges)
    assert fed["personalized"]["edges"] == 3
    assert (synthetic_run.root / "models" / "personalized" / "edge-02.npz").is_file()
    assert fed["replies_checked"] >= 3 * 3 * 2 - 2 and fed["dp"] == {"enabled": False}
    _assert_itemcf_is_the_sum_of_the_edges(synthetic_run, fed["itemcf"])


def _assert_itemcf_is_the_sum_of_the_edges(run: SyntheticRun, summary: dict[str, Any]) -> None:
    """One analytics round: every edge replied within the contract and the table is their exact sum."""
    import numpy as np
    import pyarrow.parquet as pq

    from edge_nodes.learning.cooc_table import CoocTable

    assert summary["status"] == "ok" and summary["replies"] == 3 and summary["failures"] == 0, summary
    expected = np.zeros((run.n_items, run.n_items))
    for edge in run.edges:
        t = pq.read_table(run.root / "features" / "cooc" / f"edge_id={edge}")
        np.add.at(expected, (t["prev_idx"].to_numpy(), t["next_idx"].to_numpy()), t["count"].to_numpy())
    table = CoocTable.load(run.root / "models" / "itemcf.npz", run.n_items)
    assert table.edges == 3 and (table.window, table.decay) == (5, 0.6)
    np.testing.assert_allclose(table.to_dense(), expected, rtol=1e-6)
    assert summary["pairs"] == int((expected > 0).sum())


def test_resume_continues_from_the_last_checkpoint_and_local_layers_stay_on_the_edge(
        synthetic_run: SyntheticRun) -> None:
    """Two rounds, then a resume to four, with DP and FedPer on (one test: each federation starts Ray):
    results.json states the epsilon of all four rounds, the two before the resume too; the
    checkpoints hold the global part only, and each edge trains on from the item bias it kept."""
    import numpy as np

    run, models = RunDir(synthetic_run.root), synthetic_run.root / "models"
    fed = {"dp_clip": 1.0, "dp_noise": 1.0, "local_layers": ["out_bias"]}
    run_federation(plan_federation(_cfg(synthetic_run, rounds=2, **fed), run))
    first = (models / "round-2.npz").read_bytes()
    params, _ = load_params(models / "round-2.npz")
    assert not params[5].any()  # the checkpoint holds the global part; the item bias never reached it
    sentinel = np.full(synthetic_run.n_items, 50.0, dtype=np.float32)
    for edge in synthetic_run.edges:
        np.savez(models / "local_layers" / f"{edge}.npz", out_bias=sentinel)
    out = _stage(synthetic_run, _cfg(synthetic_run, rounds=4, resume=True, **fed))["federated"]
    assert out["resumed_from_round"] == 2
    assert [r["round"] for r in out["rounds"]] == [1, 2, 3, 4]
    users = build_config({}).workload.users  # no workload section in this run: the configured users
    assert out["dp"]["rounds"] == 4 and out["dp"]["delta"] == 1 / users and out["dp"]["unit"] == "edge"
    assert out["dp"]["epsilon"] == round(account(1.0, 1.0, 4, 1 / users).epsilon, 6)
    assert (models / "round-2.npz").read_bytes() == first
    assert _checkpoints(synthetic_run) == [f"round-{i}.npz" for i in range(1, 5)]
    for edge in synthetic_run.edges:  # rounds 3-4 trained on from what the edge kept, in fresh ClientApps
        with np.load(models / "local_layers" / f"{edge}.npz") as kept:
            assert np.abs(kept["out_bias"] - 50.0).max() < 10.0
        own, _ = load_params(models / "federated" / f"{edge}.npz")
        assert np.abs(own[5] - 50.0).max() < 10.0


def test_training_stops_clearly_below_min_nodes(synthetic_run: SyntheticRun) -> None:
    cfg = _cfg(synthetic_run, rounds=2, fail_edges=["edge-00", "edge-02"], fail_rounds=[2])
    with pytest.raises(TrainingFailed, match="below federated.min_nodes = 2"):
        run_federation(plan_federation(cfg, RunDir(synthetic_run.root)))
    assert _checkpoints(synthetic_run) == ["round-1.npz"]


def _our_flower_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if ("flower-" in cmd or "flwr" in cmd) and "edgecache-flwr-" in p.environ().get("FLWR_HOME", ""):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_deployment_engine_runs_two_rounds_and_leaves_no_process(synthetic_run: SyntheticRun) -> None:
    # Two rounds, not three: every message starts a ClientApp process per SuperNode (~19 s a round
    # here), and the second round already has what a later one would (a failed edge, a checkpoint).
    cfg = _cfg(synthetic_run, engine="deployment", rounds=2, fail_edges=["edge-02"], fail_rounds=[2])
    out = run_federation(plan_federation(cfg, RunDir(synthetic_run.root)))
    assert [r["round"] for r in out["rounds"]] == [1, 2]
    assert [r["failures"] for r in out["rounds"]] == [0, 1]
    assert _checkpoints(synthetic_run) == ["round-1.npz", "round-2.npz"]
    assert (Path(synthetic_run.root) / "models" / "deployment" / "superlink.log").is_file()
    assert _our_flower_processes() == [], "deployment left Flower processes running"
    assert os.environ.get("FLWR_HOME", "").find("edgecache-flwr-") < 0
    _assert_itemcf_is_the_sum_of_the_edges(synthetic_run, out["itemcf"])

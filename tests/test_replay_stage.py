"""The replay stage end to end on a tiny run directory, and the predictors it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from edge_nodes.errors import PredictorError
from edge_nodes.learning.model import ModelSpec, init_params, save_params
from edge_nodes.learning.predictors import (
    MarkovPredictor,
    ModelPredictor,
    PopularityPredictor,
    first_k_unique,
)
from simulation.config import build_config
from simulation.pipeline import StageContext
from simulation.replay.stage import replay_stage
from simulation.rundir import RunDir
from tests.fixtures_cache import write_run

KEYS = ("hit_ratio", "byte_hit_ratio", "requests", "prefetch_bytes", "prefetch_precision",
        "origin_bytes", "latency_mean_ms", "latency_p99_ms")


def test_first_k_unique_hand_computed() -> None:
    cand = np.array([[3, 3, -1, 5, 2], [1, 2, 3, 4, 5]])
    out = first_k_unique(cand, 3, np.array([[5], [2]]))
    assert out.tolist() == [[3, 2, -1], [1, 3, 4]]


def test_markov_falls_back_to_popularity() -> None:
    pop = PopularityPredictor(np.array([1.0, 5, 3, 4, 0]))
    table = np.array([[2, -1], [3, 4], [-1, -1], [0, 1], [1, -1]])
    out = MarkovPredictor(table, pop).predict(np.array([[-1, 1], [3, 2]]), np.zeros(2), np.zeros(2), 3)
    assert out.tolist() == [[3, 4, 2], [1, 0, 4]]


def test_edge_demand_is_causal_and_hand_computed() -> None:
    from edge_nodes.cache.flow import EdgeDemand
    demand = EdgeDemand(items=5, min_demand=1.5)
    preds = np.array([[1, 2], [2, 3], [2, -1]])  # rank weights 1, 1/2
    # request 0 sees only its own predictions (1.0, 0.5); request 1 sees item 2 at 0.5 + 1
    assert demand.filter(preds).tolist() == [[-1, -1], [2, -1], [2, -1]]
    assert demand.score[2] == pytest.approx((0.5 + 1 + 1) * 0.5)  # decays between batches


def test_model_predictor_loads_a_real_model_file(tmp_path: Path) -> None:
    spec = ModelSpec(n_items=12, dim=4, history_len=2, successor=tuple(range(1, 12)) + (-1,))
    path = save_params(tmp_path / "m.npz", init_params(spec, np.random.default_rng(0)), spec)
    pred = ModelPredictor.from_npz(path, "federated")
    hist = np.array([[-1, 4], [8, 9], [3, 3]])
    ids = pred.predict(hist, np.zeros(3, dtype=int), np.array([1, 20, 23]), 3)
    assert ids.shape == (3, 3) and ((ids >= 0) & (ids < 12)).all()
    for row, last in zip(ids, hist[:, -1], strict=True):
        assert len(set(row)) == 3 and last not in row  # unique, never the item just requested
    ids2, probs = pred.predict_scored(hist, np.zeros(3, dtype=int), np.array([1, 20, 23]), 3)
    assert (np.diff(probs, axis=1) <= 1e-7).all() and (probs > 0).all() and (probs.sum(axis=1) <= 1 + 1e-6).all()


def test_model_predictor_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="edgecache train"):
        ModelPredictor.from_npz(tmp_path / "none.npz")


def _ctx(root: Path, redis_url: str, isolation: str = "db", **cache: Any) -> StageContext:
    raw = {"run": {"name": "t"}, "workload": {"items": 80, "edges": 2},
           "cache": {"capacity": 10, "policies": ["lru", "lfu", "arc", "s3fifo", "wtinylfu", "belady",
                                                  "belady_prefetch", "popularity", "markov_sql", "federated"], **cache},
           "redis": {"url": redis_url, "isolation": isolation}}
    return StageContext(build_config(raw), RunDir(root), Console(quiet=True))


@pytest.mark.slow
def test_replay_stage_on_tiny_run(tmp_path: Path, redis_url: str) -> None:
    write_run(tmp_path)
    out = replay_stage(_ctx(tmp_path, redis_url, replay_batch=64))
    pol = out["policies"]
    assert {"lru", "lfu", "arc", "s3fifo", "wtinylfu", "belady", "popularity", "markov_sql"} <= set(pol)
    assert "federated" in out["policies_skipped"] or "federated" in pol
    for name, p in pol.items():
        assert set(KEYS) <= set(p["overall"]), name
        assert set(p["per_edge"]) == {"edge-00", "edge-01"}
        assert p["overall"]["requests"] == 3000
    assert pol["belady"]["overall"]["hits"] >= max(pol[r]["overall"]["hits"] for r in
                                                   ("lru", "lfu", "arc", "s3fifo", "wtinylfu"))
    bp = pol["belady_prefetch"]["overall"]
    assert pol["belady_prefetch"]["kind"] == "offline"
    assert bp["hits"] >= pol["belady"]["overall"]["hits"] and bp["hits"] >= pol["markov_sql"]["overall"]["hits"]
    assert bp["origin_bytes"] == bp["requested_bytes"] - round(bp["byte_hit_ratio"] * bp["requested_bytes"]) \
        + bp["prefetch_bytes"] or abs(bp["origin_bytes"] - (bp["requested_bytes"] * (1 - bp["byte_hit_ratio"])
                                                             + bp["prefetch_bytes"])) <= bp["requested_bytes"] * 1e-5
    mk = pol["markov_sql"]["overall"]
    assert mk["prefetch_bytes"] <= mk["requested_bytes"]  # budget 1.0
    assert mk["hit_ratio"] > pol["lru"]["overall"]["hit_ratio"]  # binge runs are predictable
    assert out["degraded"] == []
    assert out["static_efficiency"]["oracle"]["overall"]["hit_ratio"] > 0


@pytest.mark.slow
def test_replay_is_deterministic(tmp_path: Path, redis_url: str) -> None:
    write_run(tmp_path, edges=1, train=400, test=600)
    a = replay_stage(_ctx(tmp_path, redis_url))
    b = replay_stage(_ctx(tmp_path, redis_url))
    assert a == b


@pytest.mark.slow
def test_prefix_isolation_replays_as_databases_do_and_leaves_no_keys(tmp_path: Path, redis_url: str) -> None:
    """Lockstep serves each policy on its own key prefix inside the edge's namespace: with one
    database and edge prefixes the outcome is the same, and every policy's keys are gone after."""
    import redis

    write_run(tmp_path, edges=2, train=400, test=600)
    by_db = replay_stage(_ctx(tmp_path, redis_url))
    by_prefix = replay_stage(_ctx(tmp_path, redis_url, "prefix"))
    assert by_prefix["policies"] == by_db["policies"] and by_prefix["prediction_quality"] == by_db["prediction_quality"]
    assert {"popularity", "markov_sql"} <= set(by_db["policies"])
    client = redis.Redis.from_url(redis_url, db=0)
    try:
        assert not list(client.scan_iter(match="edge:*:policy:*"))
    finally:
        client.close()


@pytest.mark.slow
def test_an_unreadable_itemcf_table_skips_its_readers_and_the_refresh(tmp_path: Path, redis_url: str) -> None:
    write_run(tmp_path, edges=1, train=400, test=600)
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "itemcf.npz").write_bytes(b"not an npz")
    out = replay_stage(_ctx(tmp_path, redis_url, policies=["lru", "itemcf", "markov_sql"]))
    assert out["analytics_refresh"]["status"].startswith("unreadable: "), out["analytics_refresh"]
    assert "itemcf" in out["policies_skipped"] and {"lru", "markov_sql"} <= set(out["policies"])

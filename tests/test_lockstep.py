"""Serving every predictive policy of an edge in lockstep gives each the outcome of serving it alone,
and models sharing side information compute it once per batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.redis_conn import edge_namespace
from edge_nodes.cache.settings import CacheSettings
from edge_nodes.learning import model as m
from edge_nodes.learning.cooc_table import CoocTable
from edge_nodes.learning.model import ModelSpec, init_params, top_k, top_k_with_probs
from edge_nodes.learning.predictors import MarkovPredictor, ModelPredictor, PopularityPredictor
from edge_nodes.learning.side import SideInfo
from edge_nodes.predictor import Predictor
from simulation.replay import calibration
from simulation.replay.calibration import CalibratedPredictor, Isotonic
from simulation.replay.lockstep import serve_lockstep
from simulation.replay.policies import ReplaySettings, replay_predictive
from simulation.replay.prediction_quality import ranking_quality
from simulation.replay.streams import EdgeStream, load_catalog, load_stream
from tests.fixtures_cache import CACHE_TEST_DB, write_run

pytestmark = pytest.mark.slow
ITEMS = 80


def _model(seed: int, side: SideInfo) -> ModelPredictor:
    spec = ModelSpec(n_items=ITEMS, dim=4, history_len=3)
    params = init_params(spec, np.random.default_rng(seed))
    m.named(params, spec)["side_w"][...] = [-1.0, 0.5, 0.3]
    return ModelPredictor(params, spec, top_k, f"model{seed}", top_k_with_probs, side)


def _setup(tmp_path: Path) -> tuple[EdgeStream, Any, dict[str, Predictor]]:
    write_run(tmp_path, edges=1, items=ITEMS, train=600, test=900)
    catalog = load_catalog(tmp_path / "catalog.parquet")
    stream = load_stream(tmp_path / "test/edge_id=edge-00", tmp_path / "features/user_state/edge_id=edge-00",
                         "edge-00", 3)
    rng = np.random.default_rng(1)
    coo = (rng.integers(0, ITEMS, 600), rng.integers(0, ITEMS, 600), rng.random(600))
    shared = SideInfo(None, CoocTable.from_coo([coo], ITEMS, 3, 0.6))
    pop = PopularityPredictor.from_table(tmp_path / "features/popularity/edge_id=edge-00", ITEMS)
    return stream, catalog, {
        "popularity": pop,
        "markov_sql": MarkovPredictor.from_table(tmp_path / "features/markov/edge_id=edge-00", ITEMS, pop),
        "federated": _model(0, shared),
        "centralized": _model(1, shared),  # same SideInfo: one side computation per batch for both
        "local_only": _model(2, SideInfo(None, CoocTable.from_coo([(coo[1], coo[0], coo[2])], ITEMS, 3, 0.6))),  # its own table
    }


@pytest.mark.parametrize("shadow", ["none", "lru"])  # lru: one shadow shared by the lockstep's flows
def test_lockstep_equals_each_policy_alone(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                           shadow: str) -> None:
    stream, catalog, predictors = _setup(tmp_path)
    settings = ReplaySettings(CacheSettings(capacity=10, eviction="lru", prefetch_price=0.5, origin_shadow=shadow,
                                            origin_ratio=1.1), top_k=2, batch_size=100)
    calibrators: dict[str, Isotonic | None] = {name: None for name in predictors}
    calibrators["federated"] = Isotonic(np.array([0.0, 1.0]), np.array([0.0, 0.9]), 1000)
    ns = edge_namespace(redis_url, "edge-00", CACHE_TEST_DB)
    calls = {"n": 0}
    sparse = SideInfo.sparse

    def counted(self: SideInfo, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        return sparse(self, *a, **kw)

    monkeypatch.setattr(SideInfo, "sparse", counted)
    try:
        out = serve_lockstep(stream, catalog, ns, settings, predictors, calibrators, quality_k=5)
        batches = len(stream.batches(settings.batch_size))
        assert calls["n"] == 2 * batches  # the federated/centralized group once, local_only once
        alone_cache = EdgeCache(ns, settings.cache)
        for name, p in predictors.items():
            cal = calibrators[name]
            served = p if cal is None else CalibratedPredictor(p, cal)
            stats = replay_predictive(stream, catalog, alone_cache, served, name, settings)
            got = out[name]
            assert got.stats.hits == stats.hits > 0, name
            assert (got.stats.prefetched, got.stats.prefetch_bytes, got.stats.prefetch_used, got.stats.requested_bytes) \
                == (stats.prefetched, stats.prefetch_bytes, stats.prefetch_used, stats.requested_bytes), name
            assert got.quality == ranking_quality(stream, p, 5), name
            for a, b in zip(got.test_pairs, calibration.test_pairs(stream, p, settings.top_k), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
        assert out["federated"].stats.prefetched != out["centralized"].stats.prefetched  # distinct models
        assert (out["federated"].limit is None) == (shadow == "none")
        assert not list(ns.client.scan_iter(match="policy:*"))  # each policy's cache flushed after
        alone_cache.flush()
    finally:
        ns.client.close()

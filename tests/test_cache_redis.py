"""The Redis edge cache: exact LRU equivalence with libCacheSim, atomic capacity, prefetch budget."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from edge_nodes.cache.batch import CacheBatch
from edge_nodes.cache.edge_cache import EdgeCache
from simulation.replay.reactive import RequestTrace, run_policy
from tests.fixtures_cache import content_ids, zipf_trace

pytestmark = pytest.mark.slow  # real embedded Redis


def _replay(cache: EdgeCache, obj: np.ndarray, sizes: np.ndarray, batch: int = 700) -> np.ndarray:
    ids = content_ids(int(obj.max()) + 1)
    out = []
    for s in range(0, obj.size, batch):
        o = obj[s:s + batch]
        res = cache.serve(CacheBatch(ids[o].tolist(), sizes[o].tolist(), ["U1"] * o.size))
        out.append(res.hits)
    return np.concatenate(out)


@pytest.mark.parametrize(("unit", "capacity"), [("items", 7), ("items", 60), ("bytes", 20_000)])
def test_redis_lru_matches_libcachesim_lru_exactly(edge_cache: Callable[..., EdgeCache],
                                                   unit: str, capacity: int) -> None:
    obj, item_size = zipf_trace(8000, 400, seed=11)
    cache = edge_cache(capacity, unit)
    hits = _replay(cache, obj, item_size)
    ref = run_policy("lru", RequestTrace(obj, item_size[obj]), capacity, unit)
    assert hits.sum() == ref.hits.sum() > 0
    np.testing.assert_array_equal(hits, ref.hits)
    n, used, actual = cache.occupancy()
    assert used == actual <= capacity


def test_hand_computed_lru_sequence(edge_cache: Callable[..., EdgeCache]) -> None:
    cache = edge_cache(2)
    res = cache.serve(CacheBatch(["A", "B", "A", "C", "B", "A"], [1] * 6, ["U"] * 6))
    assert res.hits.tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("eviction", ["lru", "demand"])
def test_concurrent_clients_keep_capacity_exact(edge_cache: Callable[..., EdgeCache], eviction: str) -> None:
    capacity = 25_000
    caches = [edge_cache(capacity, "bytes", eviction=eviction) for _ in range(4)]  # one edge, four clients
    obj, item_size = zipf_trace(4000, 300, seed=5)
    ids = content_ids(300)
    errors: list[BaseException] = []

    def client(cache: EdgeCache, part: np.ndarray) -> None:
        try:
            for s in range(0, part.size, 100):
                o = part[s:s + 100]
                batch = CacheBatch(ids[o].tolist(), item_size[o].tolist(), ["U1"] * o.size,
                                   preds=ids[(o + 1) % 300].tolist(), pred_sizes=item_size[(o + 1) % 300].tolist(), k=1)
                cache.serve(batch, requested_bytes=10**9)
        except BaseException as e:  # noqa: BLE001 - surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c, obj[i::4])) for i, c in enumerate(caches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    n, used, actual = caches[0].occupancy()
    assert used == actual <= capacity and n > 0


def test_prefetch_budget_and_share_respected(edge_cache: Callable[..., EdgeCache]) -> None:
    cache = edge_cache(50, "items", prefetch_budget=0.3, prefetch_max_share=0.2)
    obj, item_size = zipf_trace(3000, 300, seed=8)
    ids = content_ids(300)
    k = 3
    nxt = (obj[:, None] + np.arange(1, k + 1)) % 300
    req_bytes = pf_bytes = 0
    for s in range(0, obj.size, 250):
        o, p = obj[s:s + 250], nxt[s:s + 250].ravel()
        res = cache.serve(CacheBatch(ids[o].tolist(), item_size[o].tolist(), ["U1"] * o.size,
                                     preds=ids[p].tolist(), pred_sizes=item_size[p].tolist(), k=k),
                          requested_bytes=req_bytes, prefetch_bytes=pf_bytes)
        req_bytes += int(item_size[o].sum())
        pf_bytes += res.prefetched_bytes
        assert pf_bytes <= 0.3 * req_bytes
        assert cache.pending_prefetches() <= 0.2 * 50
    assert pf_bytes > 0
    assert cache.predictions("U1") == ids[nxt[-1]].tolist()
    assert 0 < cache.client.ttl(cache.ns.key("user:U1")) <= 3600


def test_prefix_isolation_keeps_edges_apart(redis_url: str) -> None:
    from edge_nodes.cache.redis_conn import edge_namespace
    from edge_nodes.cache.settings import CacheSettings
    a = EdgeCache(edge_namespace(redis_url, "edge-a", 0, "prefix"), CacheSettings(capacity=3, eviction="lru"))
    b = EdgeCache(edge_namespace(redis_url, "edge-b", 0, "prefix"), CacheSettings(capacity=3, eviction="lru"))
    for c in (a, b):
        c.flush()
    a.serve(CacheBatch(["X", "Y"], [1, 1], ["U", "U"]))
    assert b.serve(CacheBatch(["X"], [1], ["U"])).hits.tolist() == [False]
    assert a.serve(CacheBatch(["X"], [1], ["U"])).hits.tolist() == [True]
    for c in (a, b):
        c.flush()
        c.client.close()

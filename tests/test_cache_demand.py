"""The demand-aware cache mode: hand-computed eviction/admission/prefetch, capacity, budget, determinism."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge_nodes.cache.batch import CacheBatch
from edge_nodes.cache.edge_cache import EdgeCache
from tests.fixtures_cache import content_ids, zipf_trace

pytestmark = pytest.mark.slow  # real embedded Redis


def _serve(cache: EdgeCache, seq: str, users: str | None = None) -> list[bool]:
    items = list(seq)
    return cache.serve(CacheBatch(items, [1] * len(items), list(users or "U" * len(items)))).hits.tolist()


def test_frequency_keeps_the_item_lru_would_drop(edge_cache: Callable[..., EdgeCache]) -> None:
    # cap 2: C evicts B (1 request, older) and B evicts C; A (2 requests) stays -> the last A hits
    cache = edge_cache(2, eviction="demand")
    assert _serve(cache, "ABACBA") == [False, False, True, False, False, True]


@pytest.mark.parametrize(("admission", "last_hit"), [(True, True), (False, False)])
def test_admission_rejects_a_one_hit_wonder(edge_cache: Callable[..., EdgeCache], admission: bool,
                                            last_hit: bool) -> None:
    # cap 2, A and B requested twice: C (one request) cannot displace A unless admission is off
    cache = edge_cache(2, eviction="demand", admission=admission)
    assert _serve(cache, "AABBCA") == [False, True, False, True, False, last_hit]
    assert set(cache.entries()) == {"A", "B"}  # without admission C got in, then lost to A


def test_prefetch_only_when_the_prediction_beats_the_victim(edge_cache: Callable[..., EdgeCache]) -> None:
    cache = edge_cache(2, eviction="demand", pred_weight=10.0, prefetch_max_share=1.0)
    _serve(cache, "AAB")  # A: 2 requests, B: 1
    # U's next item is C with p 0.5 (value 5 > B's 1): prefetched over B; D at p 0.05 (0.5) is not
    res = cache.serve(CacheBatch(["A"], [1], ["U"], ["C", "D"], [1, 1], k=2, pred_probs=[0.5, 0.05]),
                      requested_bytes=10)
    assert (res.prefetched, res.prefetched_bytes) == (1, 1)
    assert cache.entries() == {"A": (1, False), "C": (1, True)}
    assert cache.predictions("U") == ["C", "D"]
    # U watches C: a prefetch hit; its demand is withdrawn and replaced by the new prediction
    res = cache.serve(CacheBatch(["C"], [1], ["U"], ["-", "-"], [0, 0], k=2, pred_probs=[0.0, 0.0]),
                      requested_bytes=11, prefetch_bytes=1)
    assert res.hits.tolist() == [True] and res.prefetch_used == 1
    assert cache.pending_prefetches() == 0


@pytest.mark.parametrize(("price", "fetched"), [(0.0, {"C", "D"}), (0.3, {"C"}), (0.6, set())])
def test_prefetch_pays_for_its_bytes(edge_cache: Callable[..., EdgeCache], price: float, fetched: set[str]) -> None:
    # free room, no victim: C (p 0.5) and D (p 0.2) are fetched only if expected requests > price
    cache = edge_cache(4, eviction="demand", prefetch_max_share=1.0, prefetch_price=price)
    res = cache.serve(CacheBatch(["A"], [1], ["U"], ["C", "D"], [1, 1], k=2, pred_probs=[0.5, 0.2]),
                      requested_bytes=10)
    assert res.prefetched == len(fetched)
    assert set(cache.entries()) == {"A"} | fetched


def test_demand_of_several_users_adds_up_against_the_price(edge_cache: Callable[..., EdgeCache]) -> None:
    # two users each give D p 0.2: the second prediction sees d = 0.4 > 0.3 and fetches it
    cache = edge_cache(4, eviction="demand", prefetch_max_share=1.0, prefetch_price=0.3)
    res = cache.serve(CacheBatch(["A", "B"], [1, 1], ["U", "V"], ["D", "D"], [1, 1], k=1, pred_probs=[0.2, 0.2]),
                      requested_bytes=10)
    assert res.prefetched == 1 and "D" in cache.entries()


def _run(cache: EdgeCache, k: int = 3, batch: int = 250) -> tuple[np.ndarray, int, int]:
    obj, item_size = zipf_trace(3000, 300, seed=8)
    ids = content_ids(300)
    users = [f"U{u}" for u in np.random.default_rng(1).integers(0, 40, size=obj.size)]
    nxt = (obj[:, None] + np.arange(1, k + 1)) % 300
    prob = np.tile(np.array([0.6, 0.2, 0.1])[:k], (obj.size, 1))
    req_bytes = pf_bytes = 0
    hits = []
    s = cache.settings
    for st in range(0, obj.size, batch):
        o, p = obj[st:st + batch], nxt[st:st + batch].ravel()
        res = cache.serve(CacheBatch(ids[o].tolist(), item_size[o].tolist(), users[st:st + batch], ids[p].tolist(),
                                     item_size[p].tolist(), k, prob[st:st + batch].ravel().tolist()),
                          requested_bytes=req_bytes, prefetch_bytes=pf_bytes)
        req_bytes += int(item_size[o].sum())
        pf_bytes += res.prefetched_bytes
        hits.append(res.hits)
        assert pf_bytes <= s.prefetch_budget * req_bytes
        n, used, actual = cache.occupancy()
        assert used == actual <= s.capacity
        assert cache.pending_prefetches() <= s.prefetch_cap
    return np.concatenate(hits), req_bytes, pf_bytes


@pytest.mark.parametrize(("unit", "capacity"), [("items", 40), ("bytes", 20_000)])
def test_capacity_budget_and_determinism(edge_cache: Callable[..., EdgeCache], unit: str, capacity: int) -> None:
    kw = {"eviction": "demand", "prefetch_budget": 0.3, "prefetch_max_share": 0.3}
    first, req, pf = _run(edge_cache(capacity, unit, **kw))
    second, _, pf2 = _run(edge_cache(capacity, unit, db=10, **kw))
    assert 0 < pf <= 0.3 * req
    np.testing.assert_array_equal(first, second)
    assert pf == pf2 and first.sum() > 0


def test_time_reference_rescale_keeps_values_finite(edge_cache: Callable[..., EdgeCache]) -> None:
    # half-lives of 1-2 requests force a rescale of the stored values every few hundred requests
    cache = edge_cache(30, eviction="demand", freq_half_life=2.0, pred_half_life=1.0)
    hits, _, _ = _run(cache)
    assert hits.sum() > 0
    scores = cache.client.zrange(cache.keys[2], 0, -1, withscores=True)
    assert all(np.isfinite(s) for _, s in scores)
    assert int(float(cache.client.hget(cache.keys[-1], "epoch"))) > 0

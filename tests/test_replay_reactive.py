"""libCacheSim baselines: a contract every policy meets, Belady as the bound, small capacities."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.replay.reactive import LIBRARY, REACTIVE, RequestTrace, next_access, run_all, run_policy
from tests.fixtures_cache import zipf_trace

POLICIES = LIBRARY


def _trace(n: int = 6000, items: int = 500, seed: int = 2) -> RequestTrace:
    obj, size = zipf_trace(n, items, seed)
    return RequestTrace(obj, size[obj])


def test_next_access_hand_computed() -> None:
    big = np.iinfo(np.int64).max
    assert next_access(np.array([5, 7, 5, 5, 7, 9])).tolist() == [2, 4, 3, big, big, big]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("unit", "capacity"), [("items", 30), ("bytes", 15_000)])
def test_policy_contract(policy: str, unit: str, capacity: int) -> None:
    """hit + miss = requests, first requests always miss, deterministic, not degenerate."""
    trace = _trace()
    a = run_policy(policy, trace, capacity, unit)
    b = run_policy(policy, trace, capacity, unit)
    assert a.hits.shape == (len(trace),)
    np.testing.assert_array_equal(a.hits, b.hits)
    first = np.unique(trace.obj, return_index=True)[1]
    assert not a.hits[first].any()  # a cold cache cannot hit an object's first request
    assert 0 < a.hits.sum() < len(trace)
    assert not a.flags or (policy == "belady" and unit == "bytes")


@pytest.mark.parametrize("capacity", [4, 6, 10, 25, 50, 120])
def test_belady_never_beaten_by_a_reactive_policy(capacity: int) -> None:
    trace = _trace(seed=capacity)
    res = run_all(trace, capacity, "items", POLICIES)
    bel = int(res["belady"].hits.sum())
    for name in REACTIVE:
        if not res[name].flags:  # skipped at a capacity the library cannot run
            assert int(res[name].hits.sum()) <= bel, name
    assert not res["belady"].flags


@pytest.mark.parametrize("capacity", [4, 6, 10, 50])
def test_small_capacities_are_configured_not_broken(capacity: int) -> None:
    """W-TinyLFU at 50 and S3-FIFO at 10 gave 0 hits with library defaults; not here."""
    res = run_all(_trace(seed=4), capacity, "items", POLICIES)
    lru = int(res["lru"].hits.sum())
    for name, r in res.items():
        if r.flags:
            assert r.flags[0].startswith("skipped"), (name, r.flags)
            continue
        assert r.hits.sum() >= 0.5 * lru, (name, r.params)


def test_tiny_capacity_is_skipped_with_reason_not_aborted() -> None:
    res = run_policy("wtinylfu", _trace(), 3, "items")
    assert res.flags and "raise cache.capacity" in res.flags[0]
    assert res.hits.sum() == 0

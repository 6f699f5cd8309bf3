"""Reactive baselines and the offline bound, all from libCacheSim, fed one per-edge stream.

Every policy sees the same requests in the same order with the same capacity. Library
policies that cannot run at a capacity (libCacheSim aborts the whole process on some
segment sizes) are skipped with a reason, and configurations that silently degenerate at
small capacities (S3-FIFO with a one-slot small queue, W-TinyLFU with an empty window:
zero hits) are fixed by sizing their segments; anything still implausible is flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import libcachesim as lcs
import numpy as np

from edge_nodes.cache.shadow import MIN_ITEMS, make_cache, policy_params

log = logging.getLogger(__name__)

NO_NEXT_ACCESS = np.iinfo(np.int64).max  # libCacheSim's Belady wants INT64_MAX, not -1
REACTIVE = ("lru", "lfu", "arc", "s3fifo", "wtinylfu")
OFFLINE = ("belady", "belady_prefetch")  # belady_prefetch: simulation/replay/belady_prefetch.py
LIBRARY = REACTIVE + ("belady",)          # the policies libCacheSim runs


@dataclass(frozen=True)
class RequestTrace:
    """One edge's request stream: object ids (item_idx) and sizes, in replay order."""

    obj: np.ndarray   # int64 item_idx
    size: np.ndarray  # int64 bytes

    def __len__(self) -> int:
        return int(self.obj.shape[0])


@dataclass
class ReactiveResult:
    """Per-request hit flags of one policy on one trace, plus how it was configured."""

    policy: str
    hits: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def next_access(obj: np.ndarray) -> np.ndarray:
    """Index of each request's next request for the same object (INT64_MAX if none)."""
    n = obj.shape[0]
    order = np.lexsort((np.arange(n), obj))  # grouped by object, in time order
    nxt = np.full(n, NO_NEXT_ACCESS, dtype=np.int64)
    same = obj[order[1:]] == obj[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def effective_items(capacity: int, unit: str, trace: RequestTrace) -> float:
    """How many objects the capacity holds: itself for items, capacity / mean size for bytes."""
    if unit == "items" or len(trace) == 0:
        return float(capacity)
    return capacity / max(1.0, float(trace.size.mean()))


def run_policy(policy: str, trace: RequestTrace, capacity: int, unit: str) -> ReactiveResult:
    """Replay `trace` through one library policy; per-request hit flags."""
    n_items = effective_items(capacity, unit, trace)
    params = policy_params(policy, n_items)
    if n_items < MIN_ITEMS.get(policy, 1):
        reason = (f"skipped: libCacheSim {policy} needs a capacity of >= {MIN_ITEMS[policy]} "
                  f"objects (has ~{n_items:.1f}); raise cache.capacity")
        return ReactiveResult(policy, np.zeros(len(trace), dtype=bool), params, [reason])
    cache = make_cache(policy, capacity, params, int(np.unique(trace.obj).size))
    sizes = np.ones(len(trace), dtype=np.int64) if unit == "items" else trace.size
    nxt = next_access(trace.obj) if policy == "belady" else None
    hits = np.zeros(len(trace), dtype=bool)
    req = lcs.Request()
    for i, (o, s) in enumerate(zip((trace.obj + 1).tolist(), sizes.tolist(), strict=True)):
        req.obj_id, req.obj_size, req.clock_time = o, s, i  # obj_id 0 is reserved
        if nxt is not None:
            req.next_access_vtime = int(nxt[i])
        hits[i] = cache.get(req)
    return ReactiveResult(policy, hits, params)


def run_all(trace: RequestTrace, capacity: int, unit: str, policies: tuple[str, ...]) -> dict[str, ReactiveResult]:
    """Run every requested libCacheSim policy and cross-check them (see `check`)."""
    out = {p: run_policy(p, trace, capacity, unit) for p in policies if p in LIBRARY}
    check(out, unit)
    return out


def check(results: dict[str, ReactiveResult], unit: str) -> None:
    """Flag baselines that look broken: far below LRU, or beating the Belady bound."""
    lru = results.get("lru")
    lru_hits = int(lru.hits.sum()) if lru else 0
    for name, res in results.items():
        hits = int(res.hits.sum())
        if name != "lru" and lru_hits > 20 and hits < 0.5 * lru_hits and not res.flags:
            res.flags.append(f"suspect: {hits} hits vs {lru_hits} for lru on the same trace")
    bel = results.get("belady")
    if bel is None or bel.flags:
        return
    if unit == "bytes":
        bel.flags.append("bytes capacity: libCacheSim Belady with variable sizes is a heuristic, "
                         "not a strict bound")
    best = max(((int(r.hits.sum()), n) for n, r in results.items() if n != "belady" and not r.flags),
               default=(0, ""))
    if best[0] > int(bel.hits.sum()):
        bel.flags.append(f"not an upper bound here: {best[1]} has {best[0]} hits vs "
                         f"{int(bel.hits.sum())} for belady")
        log.warning("belady beaten by %s (%d > %d hits)", best[1], best[0], int(bel.hits.sum()))

"""A reactive cache simulated beside the edge's own: what the origin would be sent without prediction.

The edge runs, on its own request stream only, a libCacheSim cache of the same capacity (a
"shadow", as in miniature-simulation cache tuning: Waldspurger et al., USENIX ATC 2017) and
prefetches only while its own origin bytes, prefetches included, stay at or below
`origin_ratio` x the shadow's (`cache.origin_shadow`, `cache.origin_ratio`; lua/demand.lua
and lua/lru.lua check it before every prefetch). So "what do I gain at the origin traffic I pay
today" has its answer on any trace, without a prefetch price tuned for it: the edge pays at most
what the reactive cache it would otherwise run pays. The shadow sees requests only (never
predictions or the edge's own cache), so its misses are causal: request i's depend on requests
up to i.

The limit alone spends the slack the edge earns as soon as it earns it; where prefetches are
priced (demand mode) the price also follows the edge's standing against its shadow
(`OriginLimit.price_scale`, `cache.price_gain`): raised while it pays more than its shadow,
lowered while it pays less, so the prefetches that get the slack are the most valuable ones.
The library policies and their segment sizing are here too (the replay's reactive baselines
use the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libcachesim as lcs
import numpy as np

from edge_nodes.cache.settings import SHADOWS
from edge_nodes.errors import CacheConfigError

FACTORIES: dict[str, Callable[..., Any]] = {
    "lru": lcs.LRU, "lfu": lcs.LFU, "arc": lcs.ARC, "s3fifo": lcs.S3FIFO,
    "wtinylfu": lcs.WTinyLFU, "belady": lcs.Belady,
}
# Below these effective item counts libCacheSim aborts (SLRU / FIFO segments of size 0).
MIN_ITEMS = {"s3fifo": 4, "wtinylfu": 6}


def policy_params(policy: str, n_items: float) -> dict[str, Any]:
    """Segment sizes that keep each library policy meaningful at this capacity."""
    if policy == "s3fifo":  # the small FIFO needs >= 2 slots, else nothing is ever promoted
        return {"small_size_ratio": round(min(0.5, max(0.1, 2.5 / n_items)), 4)}
    if policy == "wtinylfu":  # the LRU window needs >= 1 slot, else no object is admitted
        return {"window_size": round(min(0.5, max(0.01, 1.5 / n_items)), 4)}
    return {}


def make_cache(policy: str, capacity: int, params: dict[str, Any], objects: int | None = None) -> Any:
    """A libCacheSim cache object for `policy` (unit sizes for items, bytes otherwise); `objects`:
    how many distinct objects it may see (sizes its hash table; None = the library's default)."""
    if policy not in FACTORIES:
        raise ValueError(f"unknown reactive policy {policy!r}; choose from {', '.join(FACTORIES)}")
    return FACTORIES[policy](capacity, **params, **({} if objects is None else {"hashpower": hashpower(objects)}))


def hashpower(objects: int) -> int:
    """log2 of the hash table's buckets for `objects` distinct objects: twice as many, within
    2^10..2^24. The library's default, 2^24 buckets, is 128 MB a cache: page-faulted in as a
    100-object cache's few thousand objects scatter over it, ~0.1 s per cache (the replay makes
    ~50). The table is a lookup only: hits are the same at any size (tested)."""
    return min(24, max(10, (max(objects, 1) - 1).bit_length() + 1))


class ShadowCache:
    """One edge's shadow: its cumulative origin bytes after each request of the stream.

    `policy` is one library policy, or "best": all of SHADOWS side by side, the shadow's origin
    bytes through request i being the least any of them paid through i (the best reactive cache
    so far; policies that cannot run at this capacity are left out). Fed the stream in
    consecutive batches (`observe(first, ...)`); the last batch asked again (by the next of the
    policies served side by side in lockstep) is answered from memory, so they share one
    simulation and nothing older is kept.
    """

    def __init__(self, policy: str, capacity: int, unit: str, mean_size: float = 1.0,
                 objects: int | None = None) -> None:
        if policy not in SHADOWS + ("best",):
            raise CacheConfigError(f"cache.origin_shadow {policy!r} is not allowed; use one of "
                                   f"{', '.join(SHADOWS)}, best or none")
        n_items = float(capacity) if unit == "items" else capacity / max(1.0, mean_size)
        runnable = [p for p in (SHADOWS if policy == "best" else (policy,)) if n_items >= MIN_ITEMS.get(p, 1)]
        if not runnable:
            raise CacheConfigError(f"cache.origin_shadow {policy} needs a capacity of >= {MIN_ITEMS.get(policy, 1)} objects "
                                   f"(has ~{n_items:.1f}); raise cache.capacity or set cache.origin_shadow = \"none\"")
        self.policy, self.items = policy, unit == "items"
        params = {p: policy_params(p, n_items) for p in runnable}
        self.params: dict[str, Any] = params if policy == "best" else params[policy]
        self._capacity, self._objects = capacity, objects  # `objects`: distinct objects the stream may hold
        self._caches: list[Any] | None = None  # made on the first batch simulated (not when read: use_known)
        self._req = lcs.Request()
        self._last: tuple[int, np.ndarray] | None = None  # the last batch: its first request, its answer
        self._paid = np.zeros(len(runnable), dtype=np.int64)  # each library cache's origin bytes so far
        self._runnable = runnable
        self._known: np.ndarray | None = None  # the whole stream's answer, when read from earlier runs
        self.seen, self.origin_bytes = 0, 0

    def params_of(self, policy: str) -> dict[str, Any]:
        """The segment params of one of the shadow's library policies."""
        return self.params[policy] if self.policy == "best" else self.params

    def use_known(self, hits: dict[str, tuple[np.ndarray, dict[str, Any]]], size: np.ndarray) -> bool:
        """Read the answers from the same library caches already run on this whole stream (the
        replay's reactive baselines: policy -> (per-request hit flags, segment params)) instead of
        simulating them again; only if every policy of the shadow is there with the same params.
        Nothing may have been observed yet. Returns whether they are used."""
        if self.seen or any(p not in hits or hits[p][1] != self.params_of(p) for p in self._runnable):
            return False
        sizes = size.astype(np.int64)
        self._known = np.stack([np.cumsum(np.where(hits[p][0], 0, sizes)) for p in self._runnable]).min(axis=0)
        return True

    def observe(self, first: int, item: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Cumulative origin bytes through each request of the batch at stream position `first`."""
        n = int(item.shape[0])
        if self._last is not None and first == self._last[0] and n == self._last[1].shape[0]:
            return self._last[1]  # the same batch for the next policy in lockstep
        if first != self.seen:
            raise ValueError(f"shadow fed request {first} after {self.seen}: batches must be consecutive")
        if self._known is not None:
            cum = self._known[first:first + n]
            if cum.shape[0] != n:
                raise ValueError(f"shadow asked for requests {first}..{first + n} of a {self._known.shape[0]}-request stream")
            return self._remember(first, cum)
        if self._caches is None:
            self._caches = [make_cache(p, self._capacity, self.params_of(p), self._objects) for p in self._runnable]
        req, sizes = self._req, size.astype(np.int64)
        obj_ids, obj_sizes = (item + 1).tolist(), [1] * n if self.items else sizes.tolist()  # obj_id 0 is reserved
        paid = np.empty((len(self._caches), n), dtype=np.int64)
        for c, cache in enumerate(self._caches):
            miss = np.empty(n, dtype=bool)
            for i, (o, s) in enumerate(zip(obj_ids, obj_sizes, strict=True)):
                req.obj_id, req.obj_size, req.clock_time = o, s, first + i
                miss[i] = not cache.get(req)
            paid[c] = self._paid[c] + np.cumsum(np.where(miss, sizes, 0))
        if n:
            self._paid = paid[:, -1].copy()
        return self._remember(first, paid.min(axis=0))

    def _remember(self, first: int, cum: np.ndarray) -> np.ndarray:
        n = int(cum.shape[0])
        self.origin_bytes = int(cum[-1]) if n else self.origin_bytes
        self._last = (first, cum)
        self.seen = first + n
        return cum


PRICE_RANGE = 3.0  # the controller moves the price within [e^-3, e^3] x cache.prefetch_price


@dataclass
class OriginLimit:
    """One flow's origin limit: the (possibly shared) shadow, the allowed ratio, the price's controller.

    The controller is proportional to the edge's average standing: with e = (origin bytes -
    ratio x shadow origin bytes) / requested bytes, all through the last served batch, the next
    batch's price is prefetch_price x exp(gain x e) (clipped to e^+-3). Gain 0 keeps the price.
    """

    shadow: ShadowCache
    ratio: float = 1.0
    gain: float = 0.0
    served_shadow: int = 0  # the shadow's origin bytes through the last served batch
    scale: float = 1.0      # the price multiplier last handed out

    def served(self, shadow_bytes: int) -> None:
        """A batch was counted (served or during an outage): the shadow's bytes through its end."""
        self.served_shadow = shadow_bytes

    def summary(self) -> dict[str, Any]:
        """How the limit stood at the end (results.json `policies.<name>.params.<edge>`)."""
        return {"origin_shadow": self.shadow.policy, "shadow_params": self.shadow.params, "origin_ratio": self.ratio,
                "shadow_origin_bytes": self.served_shadow, "price_gain": self.gain,
                "last_price_scale": round(self.scale, 4)}

    def price_scale(self, origin_bytes: int, requested_bytes: int) -> float:
        """The multiplier of cache.prefetch_price for the next batch."""
        if self.gain > 0 and requested_bytes > 0:
            e = (origin_bytes - self.ratio * self.served_shadow) / requested_bytes
            self.scale = math.exp(max(-PRICE_RANGE, min(PRICE_RANGE, self.gain * e)))
        return self.scale

"""`belady_prefetch (offline bound)`: integrated prefetching and caching with the future known.

Cao, Felten, Karlin and Li's "aggressive" rule (SIGMETRICS 1995), adapted to the replay's model,
where a prefetch has no latency and costs the item's bytes from the origin (as a miss would):
after each request, fetch the missing item whose next reference is soonest, evicting the cached
items whose next references are furthest (Belady), but only if every such victim is referenced
after the fetched item; repeat up to `per_request` times while the budget allows. Demand misses
follow libCacheSim's Belady exactly (a miss is always cached, evicting the cached items referenced
furthest in the future), so with a zero budget the hits are `belady`'s, request for request.
The budget is the live cache's: prefetched bytes <= budget * requested bytes so far, and unused
prefetches hold at most `max_share` of the capacity. With a zero budget this is Belady itself.

With `users` (`cache.bound_lead = "user"`, the default) a request may be prefetched only after
the same user's previous request at the edge: the moment the live cache predicts it, as in Cao
et al.'s model a fetch must start before the reference it serves (there a fetch takes F time
units; here the lead is the user's gap between requests). The bound is then what a perfect
next-request predictor could reach with the same cache and budget. Without `users` (lead "none")
any future reference may be fetched just in time, which turns every demand miss into a
prefetched hit for the same origin bytes: the bound approaches 100% at budget >= the miss-byte
share, and says nothing about prediction.

Two lazy heaps over next-reference positions (the cached items' furthest, the missing items'
soonest; with a lead, the users' next requests) make each request O(log n).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from simulation.replay.reactive import NO_NEXT_ACCESS, RequestTrace, next_access

NAME = "belady_prefetch"
LABEL = "belady_prefetch (offline bound)"


@dataclass(frozen=True)
class PrefetchLimits:
    """The live cache's prefetch limits, applied to the bound as well."""

    budget: float = 1.0     # prefetched bytes <= budget * requested bytes so far
    max_share: float = 0.5  # share of the capacity that unused prefetches may hold
    per_request: int = 3    # prefetches after each request (cache.prefetch_top_k)


@dataclass(frozen=True)
class BoundResult:
    """Per-request hit flags and the prefetch counters of one edge."""

    hits: np.ndarray
    prefetched: int
    prefetch_bytes: int
    prefetch_used: int
    prefetch_wasted: int


class _Bound:
    """The cache state of one replay (dense item codes; weights are 1 or bytes)."""

    def __init__(self, trace: RequestTrace, capacity: int, unit: str, limits: PrefetchLimits,
                 users: np.ndarray | None = None) -> None:
        uniq, first, code = np.unique(trace.obj, return_index=True, return_inverse=True)
        self.code: list[int] = code.ravel().tolist()
        self.size = trace.size[first].tolist()
        self.weight = [1] * uniq.size if unit == "items" else list(self.size)
        self.nxt = next_access(trace.obj).tolist()
        self.cap, self.limits = capacity, limits
        self.pf_cap = limits.max_share * capacity
        self.next_use = first.tolist()
        self.cached, self.pending = [False] * uniq.size, [False] * uniq.size
        self.used = self.pfw = 0
        self.far: list[tuple[int, int]] = []                      # (-next use, code) of cached items
        self.lead = users is not None
        # (next use, code) of missing items; with a lead, (request, code) of the users' next requests
        self.soon = [] if self.lead else [(int(p), c) for c, p in enumerate(first.tolist())]
        heapq.heapify(self.soon)
        if users is not None:
            self.user_next: list[int] = next_access(np.unique(users, return_inverse=True)[1].ravel()).tolist()
            self.parked: dict[int, list[int]] = {}  # code -> known requests met while it was cached
        self.prefetched = self.pf_bytes = self.pf_used = self.wasted = 0

    def victims(self, need: int, before: int) -> list[int] | None:
        """Cached items, furthest next use first, freeing `need`; None unless all are used after `before`."""
        out: list[int] = []
        freed = 0
        while freed < need and self.far:
            key, c = self.far[0]
            if not self.cached[c] or self.next_use[c] != -key:
                heapq.heappop(self.far)  # stale entry
                continue
            if -key <= before:
                break
            heapq.heappop(self.far)
            out.append(c)
            freed += self.weight[c]
        if freed >= need:
            return out
        for c in out:  # not enough room: put them back untouched
            heapq.heappush(self.far, (-self.next_use[c], c))
        return None

    def evict(self, c: int) -> None:
        self.cached[c] = False
        self.used -= self.weight[c]
        if self.pending[c]:
            self.pending[c] = False
            self.pfw -= self.weight[c]
            self.wasted += 1
        if self.lead:
            for r in self.parked.pop(c, ()):
                heapq.heappush(self.soon, (r, c))
        elif self.next_use[c] != NO_NEXT_ACCESS:
            heapq.heappush(self.soon, (self.next_use[c], c))

    def insert(self, c: int, before: int) -> bool:
        """Cache c if the items it must displace are all referenced after `before` (-1: always)."""
        if self.weight[c] > self.cap:
            return False
        room = self.used + self.weight[c] - self.cap
        out = self.victims(room, before) if room > 0 else []
        if out is None:
            return False
        for v in out:
            self.evict(v)
        self.cached[c] = True
        self.used += self.weight[c]
        heapq.heappush(self.far, (-self.next_use[c], c))
        return True

    def request(self, t: int) -> bool:
        """Serve request t; True on a hit."""
        c = self.code[t]
        self.next_use[c] = self.nxt[t]
        if self.cached[c]:
            if self.pending[c]:
                self.pending[c] = False
                self.pfw -= self.weight[c]
                self.pf_used += 1
            heapq.heappush(self.far, (-self.nxt[t], c))
            return True
        if not self.insert(c, -1) and self.nxt[t] != NO_NEXT_ACCESS and not self.lead:
            heapq.heappush(self.soon, (self.nxt[t], c))
        return False

    def learn(self, t: int) -> None:
        """With a lead: request t's user's next request becomes known (the live cache predicts it now)."""
        r = self.user_next[t]
        if r != NO_NEXT_ACCESS:
            heapq.heappush(self.soon, (r, self.code[r]))

    def soonest_missing(self, t: int) -> int | None:
        """The missing item referenced soonest after t (None if none is referenced again).

        With a lead, only references already known count, and a known request of a cached item
        is parked until the item is evicted (it may be needed again before that request)."""
        while self.soon:
            at, c = self.soon[0]
            if self.lead:
                if at <= t:
                    heapq.heappop(self.soon)
                    continue
                if self.cached[c]:
                    self.parked.setdefault(c, []).append(heapq.heappop(self.soon)[0])
                    continue
                return c
            if self.cached[c] or self.next_use[c] != at or at <= t:
                heapq.heappop(self.soon)
                continue
            return c
        return None

    def prefetch(self, t: int, requested_bytes: int) -> None:
        """Cao et al.'s aggressive step, up to `per_request` times within the budget."""
        for _ in range(self.limits.per_request):
            c = self.soonest_missing(t)
            if c is None:
                return
            if (self.pf_bytes + self.size[c] > self.limits.budget * requested_bytes
                    or self.pfw + self.weight[c] > self.pf_cap):
                return
            entry = heapq.heappop(self.soon)  # before insert: its evictions push onto this heap
            if not self.insert(c, self.next_use[c]):
                heapq.heappush(self.soon, entry)
                return
            if self.lead:
                self.parked.setdefault(c, []).append(entry[0])
            self.pending[c] = True
            self.pfw += self.weight[c]
            self.prefetched += 1
            self.pf_bytes += self.size[c]


def belady_prefetch(trace: RequestTrace, capacity: int, unit: str, limits: PrefetchLimits,
                    users: np.ndarray | None = None) -> BoundResult:
    """Replay `trace` through the offline prefetching bound; per-request hits and prefetch counters.

    `users` (the requests' user ids): a request may be prefetched only after its user's previous
    request (lead "user"); None: at any time (lead "none")."""
    state = _Bound(trace, capacity, unit, limits, users)
    hits = np.zeros(len(trace), dtype=bool)
    requested = 0
    sizes = trace.size.tolist()
    for t in range(len(trace)):
        hits[t] = state.request(t)
        requested += sizes[t]
        if state.lead:
            state.learn(t)
        state.prefetch(t, requested)
    return BoundResult(hits, state.prefetched, state.pf_bytes, state.pf_used, state.wasted)

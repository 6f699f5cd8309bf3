"""An edge's cache in its own Redis database (or key prefix), with a capacity in items or bytes.

Two eviction modes of one cache: `lru` (exactly libCacheSim's LRU when prefetching is off)
and `demand` (retention value = decayed request frequency + predicted demand of the active
users; see `cache_lua_demand`). All per-request work runs on the server in one FCALL per
batch, so the capacity can never be exceeded, even with many clients serving one edge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
import redis

from edge_nodes.cache_lua import DEMAND_FUNCTION, FUNCTION, LIBRARY_NAME, LUA
from edge_nodes.errors import CacheConfigError
from edge_nodes.redis_conn import EdgeNamespace

log = logging.getLogger(__name__)

NO_ITEM = "-"


@dataclass(frozen=True)
class CacheSettings:
    """What an edge is handed about its cache (plain values parsed from the config)."""

    capacity: int
    unit: str = "items"              # items | bytes
    prediction_ttl_s: int = 3600
    prefetch_budget: float = 1.0     # prefetched bytes <= budget * requested bytes
    prefetch_max_share: float = 0.5  # unused prefetches may fill at most this share
    prefetch_on_hit: bool = True     # refresh and prefetch after hits too, not only misses
    eviction: str = "lru"            # lru | demand
    freq_half_life: float = 2000.0   # demand: half-life of request counts, in requests at the edge
    pred_half_life: float = 300.0    # demand: half-life of predicted demand, in requests
    pred_weight: float = 30.0        # demand: value of one predicted view (probability 1) vs one request
    evict_sample: int = 8            # demand: lowest-key entries compared exactly per eviction
    admission: bool = True           # demand: a miss is cached only if it beats the eviction victim
    history_entries: int = 20000     # demand: items whose decayed frequency is remembered

    def __post_init__(self) -> None:
        if self.unit not in ("items", "bytes"):
            raise CacheConfigError(f"cache unit {self.unit!r} is not allowed; use items or bytes")
        if self.eviction not in ("lru", "demand"):
            raise CacheConfigError(f"cache eviction {self.eviction!r} is not allowed; use lru or demand")
        if min(self.freq_half_life, self.pred_half_life) < 1 or self.evict_sample < 1:
            raise CacheConfigError("cache half-lives and cache.evict_sample must be >= 1")
        if self.capacity < 1:
            raise CacheConfigError(f"cache capacity {self.capacity} must be >= 1")
        if not 0.0 <= self.prefetch_max_share <= 1.0:
            raise CacheConfigError("cache.prefetch_max_share must be within 0..1")

    @property
    def prefetch_cap(self) -> float:
        """Weight (items or bytes) that unused prefetched entries may occupy."""
        return self.prefetch_max_share * self.capacity


@dataclass(frozen=True)
class BatchOutcome:
    """What the server did for one batch: per-request hits and prefetch counters."""

    hits: np.ndarray
    prefetched: int
    prefetched_bytes: int
    prefetch_used: int
    prefetch_wasted: int


class EdgeCache:
    """The edge cache on one EdgeNamespace; `serve` runs a batch atomically on the server."""

    def __init__(self, ns: EdgeNamespace, settings: CacheSettings) -> None:
        self.ns = ns
        self.settings = settings
        self.demand = settings.eviction == "demand"
        names = ("dk", "ent", "fq", "dm", "dmeta") if self.demand else ("lru", "meta")
        self.keys = [ns.key(k) for k in names]

    @property
    def client(self) -> redis.Redis:
        return self.ns.client

    def load(self) -> None:
        """Install the Functions library (idempotent; needed again after a server restart)."""
        self.client.function_load(LUA, replace=True)
        log.debug("loaded Redis functions library %s", LIBRARY_NAME)

    def flush(self) -> None:
        """Drop this edge's cache entries and prediction keys, and nothing else on the server.

        Never FLUSHDB: on an external server, database i may hold someone else's keys too.
        """
        self.client.delete(*[self.ns.key(k) for k in ("lru", "meta", "dk", "ent", "fq", "dm", "dmeta")])
        users = list(self.client.scan_iter(match=self.ns.key("user:*"), count=1000))
        for batch in _chunks(users, 500):
            self.client.delete(*batch)

    def serve(self, items: Sequence[str], sizes: Sequence[int], users: Sequence[str],
              preds: Sequence[str], pred_sizes: Sequence[int], k: int,
              req_bytes0: int, pf_bytes0: int, pred_probs: Sequence[float] | None = None) -> BatchOutcome:
        """Serve requests in order: hit or admit, then prefetch the k predictions per request.

        `pred_probs` (the predictions' probabilities) feed the demand mode; LRU ignores them.
        """
        s = self.settings
        head = [s.capacity, int(s.unit == "items"), s.prediction_ttl_s, s.prefetch_budget,
                req_bytes0, pf_bytes0, s.prefetch_cap, int(s.prefetch_on_hit), k, self.ns.key("user:")]
        if self.demand:
            probs = pred_probs if pred_probs is not None else [1.0] * len(preds)
            fn, args = DEMAND_FUNCTION, head + demand_args(items, sizes, users, preds, pred_sizes, probs, s)
        else:
            fn, args = FUNCTION, head + [" ".join(items), " ".join(map(str, sizes)), " ".join(users),
                                         " ".join(preds), " ".join(map(str, pred_sizes))]
        try:
            flags, pf_n, pf_bytes, pf_used, wasted = self.client.fcall(fn, len(self.keys), *self.keys, *args)
        except redis.ResponseError as e:
            if "function" not in str(e).lower():
                raise
            self.load()  # a fresh or restarted server has no library yet
            flags, pf_n, pf_bytes, pf_used, wasted = self.client.fcall(fn, len(self.keys), *self.keys, *args)
        hits = np.frombuffer(flags, dtype=np.uint8) == ord("1") if flags else np.zeros(0, bool)
        return BatchOutcome(hits, int(pf_n), int(pf_bytes), int(pf_used), int(wasted))

    def _entries(self) -> list[tuple[str, int, bool]]:
        """(content id, size, still an unrequested prefetch) per cached entry."""
        if self.demand:
            raw = self.client.hgetall(self.keys[1])
            return [(k.decode(), int(v) // 2, int(v) % 2 == 1) for k, v in raw.items()]
        members = self.client.zrange(self.keys[0], 0, -1, withscores=True)
        return [(m.decode().rsplit("|", 1)[0], int(m.rsplit(b"|", 1)[1]), int(s) % 2 == 1) for m, s in members]

    def entries(self) -> dict[str, tuple[int, bool]]:
        """Cached content id -> (size, still an unrequested prefetch)."""
        return {cid: (size, pending) for cid, size, pending in self._entries()}

    def occupancy(self) -> tuple[int, int, int]:
        """(entries, accounted weight, actual weight) - equal when accounting is exact.

        In demand mode an ordering key without an entry (or the reverse) counts as inexact.
        """
        ents = self._entries()
        used = int(float(self.client.hget(self.keys[-1], "used") or 0))
        actual = len(ents) if self.settings.unit == "items" else sum(s for _, s, _ in ents)
        if self.demand and self.client.zcard(self.keys[0]) != len(ents):
            actual = -1
        return len(ents), used, actual

    def pending_prefetches(self) -> int:
        """Entries prefetched but not requested yet."""
        return sum(1 for _, _, pending in self._entries() if pending)

    def predictions(self, user_id: str) -> list[str]:
        """The user's current top predicted content ids (empty when expired or unknown)."""
        raw = self.client.get(self.ns.key(f"user:{user_id}"))
        return raw.decode().split(";", 1)[0].split(",") if raw else []


def demand_args(items: Sequence[str], sizes: Sequence[int], users: Sequence[str], preds: Sequence[str],
                pred_sizes: Sequence[int], probs: Sequence[float], s: CacheSettings) -> list[object]:
    """The demand function's per-batch ARGV: msgpack arrays (probabilities as %.6g text), then settings."""
    def pack(xs: Sequence[object]) -> bytes:
        return msgpack.packb(xs, default=lambda x: x.item())  # numpy scalars too
    return [pack(items), pack(sizes), pack(users), pack(preds), pack(pred_sizes),
            pack([f"{p:.6g}" for p in probs]), s.freq_half_life, s.pred_half_life, s.pred_weight,
            s.evict_sample, s.history_entries, int(s.admission)]


def _chunks(seq: list[bytes], n: int) -> list[list[bytes]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]

"""An edge's cache in its own Redis database (or key prefix): LRU with a capacity in items or bytes.

All per-request work runs on the server in one FCALL per batch (see `cache_lua`), so the
capacity can never be exceeded, even with many clients serving the same edge at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

from edge_nodes.cache_lua import FUNCTION, LIBRARY_NAME, LUA
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

    def __post_init__(self) -> None:
        if self.unit not in ("items", "bytes"):
            raise CacheConfigError(f"cache unit {self.unit!r} is not allowed; use items or bytes")
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
        self.keys = [ns.key("lru"), ns.key("meta")]

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
        self.client.delete(*self.keys)
        users = list(self.client.scan_iter(match=self.ns.key("user:*"), count=1000))
        for batch in _chunks(users, 500):
            self.client.delete(*batch)

    def serve(self, items: Sequence[str], sizes: Sequence[int], users: Sequence[str],
              preds: Sequence[str], pred_sizes: Sequence[int], k: int,
              req_bytes0: int, pf_bytes0: int) -> BatchOutcome:
        """Serve requests in order: hit or admit, then prefetch the k predictions per request."""
        s = self.settings
        args = [s.capacity, int(s.unit == "items"), s.prediction_ttl_s, s.prefetch_budget,
                req_bytes0, pf_bytes0, s.prefetch_cap, int(s.prefetch_on_hit), k,
                self.ns.key("user:"), " ".join(items), " ".join(map(str, sizes)), " ".join(users),
                " ".join(preds), " ".join(map(str, pred_sizes))]
        try:
            flags, pf_n, pf_bytes, pf_used, wasted = self.client.fcall(FUNCTION, len(self.keys),
                                                                       *self.keys, *args)
        except redis.ResponseError as e:
            if "function" not in str(e).lower():
                raise
            self.load()  # a fresh or restarted server has no library yet
            flags, pf_n, pf_bytes, pf_used, wasted = self.client.fcall(FUNCTION, len(self.keys),
                                                                       *self.keys, *args)
        hits = np.frombuffer(flags, dtype=np.uint8) == ord("1") if flags else np.zeros(0, bool)
        return BatchOutcome(hits, int(pf_n), int(pf_bytes), int(pf_used), int(wasted))

    def occupancy(self) -> tuple[int, int, int]:
        """(entries, accounted weight, actual weight) - equal when accounting is exact."""
        members = self.client.zrange(self.keys[0], 0, -1)
        used = int(float(self.client.hget(self.keys[1], "used") or 0))
        sizes = [int(m.rsplit(b"|", 1)[1]) for m in members]
        actual = len(sizes) if self.settings.unit == "items" else sum(sizes)
        return len(members), used, actual

    def pending_prefetches(self) -> int:
        """Entries prefetched but not requested yet (odd scores)."""
        scores = self.client.zrange(self.keys[0], 0, -1, withscores=True)
        return sum(1 for _, s in scores if int(s) % 2 == 1)

    def predictions(self, user_id: str) -> list[str]:
        """The user's current top predicted content ids (empty when expired or unknown)."""
        raw = self.client.get(self.ns.key(f"user:{user_id}"))
        return raw.decode().split(",") if raw else []


def _chunks(seq: list[bytes], n: int) -> list[list[bytes]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]

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
from typing import Any

import msgpack
import numpy as np
import redis

from edge_nodes.cache.cache_lua import DEMAND_FUNCTION, FUNCTION, LIBRARY_NAME, LUA
from edge_nodes.cache.redis_conn import RETRIABLE, EdgeNamespace
from edge_nodes.errors import CacheConfigError

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


@dataclass(frozen=True)
class PreparedBatch:
    """A batch encoded for the server function; args[4:6] are filled in by `EdgeCache.send`."""

    fn: str
    args: list[object]


@dataclass(frozen=True)
class PendingBatch:
    """A batch sent on `conn` (None: sending failed) whose reply is still to be read."""

    fn: str
    args: list[object]
    conn: redis.connection.AbstractConnection | None


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
        prep = self.prepare(items, sizes, users, preds, pred_sizes, k, pred_probs)
        return self.receive(self.send(prep, req_bytes0, pf_bytes0))

    def prepare(self, items: Sequence[str], sizes: Sequence[int], users: Sequence[str],
                preds: Sequence[str], pred_sizes: Sequence[int], k: int,
                pred_probs: Sequence[float] | np.ndarray | None = None) -> PreparedBatch:
        """Encode a batch for `send` (everything but the running byte counters)."""
        s = self.settings
        head = [s.capacity, int(s.unit == "items"), s.prediction_ttl_s, s.prefetch_budget,
                0, 0, s.prefetch_cap, int(s.prefetch_on_hit), k, self.ns.key("user:")]
        if self.demand:
            probs = pred_probs if pred_probs is not None else [1.0] * len(preds)
            return PreparedBatch(DEMAND_FUNCTION, head + demand_args(items, sizes, users, preds, pred_sizes, probs, s))
        return PreparedBatch(FUNCTION, head + [" ".join(items), " ".join(map(str, sizes)), " ".join(users),
                                               " ".join(preds), " ".join(map(str, pred_sizes))])

    def send(self, prep: PreparedBatch, req_bytes0: int, pf_bytes0: int) -> PendingBatch:
        """Write the batch's FCALL without waiting for the reply (read it with `receive`).

        A connection error here is not raised: `receive` then retries synchronously.
        """
        args = list(prep.args)
        args[4], args[5] = req_bytes0, pf_bytes0
        pool, conn = self.client.connection_pool, None
        try:
            conn = pool.get_connection()
            conn.send_command("FCALL", prep.fn, len(self.keys), *self.keys, *args)
        except RETRIABLE:
            if conn is not None:
                conn.disconnect()
                pool.release(conn)  # type: ignore[arg-type]
            return PendingBatch(prep.fn, args, None)
        return PendingBatch(prep.fn, args, conn)

    def receive(self, pending: PendingBatch) -> BatchOutcome:
        """The outcome of a sent batch; retried (with the client's backoff) after a connection error."""
        reply: Any = None
        if pending.conn is not None:
            try:
                reply = pending.conn.read_response()
            except redis.ResponseError as e:
                if "function" not in str(e).lower():
                    raise
                reply = None  # no library on a fresh server: the synchronous call below loads it
            except RETRIABLE:
                pending.conn.disconnect()
            except BaseException:
                pending.conn.disconnect()
                raise
            finally:
                self.client.connection_pool.release(pending.conn)  # type: ignore[arg-type]
        if reply is None:
            reply = self._fcall(pending.fn, pending.args)
        flags, pf_n, pf_bytes, pf_used, wasted = reply
        hits = np.frombuffer(flags, dtype=np.uint8) == ord("1") if flags else np.zeros(0, bool)
        return BatchOutcome(hits, int(pf_n), int(pf_bytes), int(pf_used), int(wasted))

    def _fcall(self, fn: str, args: list[object]) -> list[object]:
        try:
            return self.client.fcall(fn, len(self.keys), *self.keys, *args)
        except redis.ResponseError as e:
            if "function" not in str(e).lower():
                raise
            self.load()  # a fresh or restarted server has no library yet
            return self.client.fcall(fn, len(self.keys), *self.keys, *args)

    def _entries(self) -> list[tuple[str, int, bool]]:
        """(content id, size, still an unrequested prefetch) per cached entry."""
        if self.demand:
            raw: dict[bytes, bytes] = self.client.hgetall(self.keys[1])  # type: ignore[assignment]
            return [(k.decode(), int(v) // 2, int(v) % 2 == 1) for k, v in raw.items()]
        members: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
            self.keys[0], 0, -1, withscores=True)
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
        raw: bytes | None = self.client.get(self.ns.key(f"user:{user_id}"))  # type: ignore[assignment]
        return raw.decode().split(";", 1)[0].split(",") if raw else []


def demand_args(items: Sequence[str], sizes: Sequence[int], users: Sequence[str], preds: Sequence[str],
                pred_sizes: Sequence[int], probs: Sequence[float] | np.ndarray, s: CacheSettings) -> list[object]:
    """The demand function's per-batch ARGV: msgpack arrays, then settings.

    Probabilities go as '%.6g' text (kept in `user:<id>`) and as the numbers that text reads as.
    """
    def pack(xs: Sequence[object]) -> bytes:
        return msgpack.packb(xs, default=lambda x: x.item())  # numpy scalars too
    text, values = format_probs(probs)
    return [pack(items), pack(sizes), pack(users), pack(preds), pack(pred_sizes), pack(text),
            s.freq_half_life, s.pred_half_life, s.pred_weight, s.evict_sample, s.history_entries,
            int(s.admission), pack(values)]


def format_probs(probs: Sequence[float] | np.ndarray) -> tuple[list[str], list[float]]:
    """Each probability as '%.6g' text and as float(text), converting each distinct value once."""
    p = np.ascontiguousarray(probs, dtype=np.float64)
    bits, inv = np.unique(p.view(np.int64), return_inverse=True)
    if 4 * bits.size > p.size:  # mostly distinct (a model's softmax): no gain from sharing
        text = [f"{x:.6g}" for x in p.tolist()]
        return text, [float(t) for t in text]
    uniq = [f"{x:.6g}" for x in bits.view(np.float64).tolist()]
    inv = inv.ravel()
    return (np.array(uniq, dtype=object)[inv].tolist(),
            np.array([float(t) for t in uniq], dtype=np.float64)[inv].tolist())


def _chunks(seq: list[bytes], n: int) -> list[list[bytes]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]

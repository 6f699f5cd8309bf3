"""An edge's cache in its own Redis database (or key prefix), with a capacity in items or bytes.

Two eviction modes of one cache (`modes.MODES`): `lru` (exactly libCacheSim's LRU when
prefetching is off) and `demand` (retention value = decayed request frequency + predicted
demand of the active users). All per-request work runs on the server (lua/*.lua) in one
FCALL per batch, so the capacity can never be exceeded, even with many clients serving one edge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from edge_nodes.cache.batch import BatchOutcome, CacheBatch, MapFields
from edge_nodes.cache.library import LIBRARY, library_source
from edge_nodes.cache.modes import ALL_KEY_NAMES, MODES
from edge_nodes.cache.redis_conn import RETRIABLE, EdgeNamespace
from edge_nodes.cache.settings import CacheSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch encoded for the server function: every argument-map field but the byte counters."""

    fn: str
    fields: MapFields


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
        self.mode = MODES[settings.eviction]
        self.keys = [ns.key(k) for k in self.mode.key_names]
        self._settings_fields = MapFields.of(self.mode.settings_args(settings) | {"user_prefix": ns.key("user:")})

    @property
    def client(self) -> redis.Redis:
        return self.ns.client

    def load(self) -> None:
        """Install the Functions library (idempotent; needed again after a server restart)."""
        self.client.function_load(library_source(), replace=True)
        log.debug("loaded Redis functions library %s", LIBRARY)

    def flush(self) -> None:
        """Drop this edge's cache entries and prediction keys, and nothing else on the server.

        Never FLUSHDB: on an external server, database i may hold someone else's keys too.
        """
        self.client.delete(*[self.ns.key(k) for k in ALL_KEY_NAMES])
        users = list(self.client.scan_iter(match=self.ns.key("user:*"), count=1000))
        for batch in _chunks(users, 500):
            self.client.delete(*batch)

    def serve(self, batch: CacheBatch, *, requested_bytes: int = 0, prefetch_bytes: int = 0,
              origin_bytes: int = 0, price_scale: float = 1.0) -> BatchOutcome:
        """Serve requests in order: hit or admit, then prefetch the k predictions per request.

        `requested_bytes`, `prefetch_bytes` and `origin_bytes` are the edge's counters before this
        batch (the prefetch budget; the origin limit when the batch carries `shadow_origin`);
        `price_scale` multiplies the prefetch price for this batch (demand mode).
        """
        return self.receive(self.send(self.prepare(batch), requested_bytes, prefetch_bytes, origin_bytes,
                                      price_scale))

    def prepare(self, batch: CacheBatch) -> PreparedBatch:
        """Encode a batch for `send`: its mode's argument fields, all but the running byte counters."""
        return PreparedBatch(self.mode.function, self._settings_fields + MapFields.of(self.mode.batch_args(batch)))

    def send(self, prep: PreparedBatch, requested_bytes: int, prefetch_bytes: int, origin_bytes: int = 0,
             price_scale: float = 1.0) -> PendingBatch:
        """Write the batch's FCALL without waiting for the reply (read it with `receive`).

        A connection error here is not raised: `receive` then retries synchronously.
        """
        args: list[object] = [self.arguments(prep, requested_bytes, prefetch_bytes, origin_bytes, price_scale)]
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

    def arguments(self, prep: PreparedBatch, requested_bytes: int, prefetch_bytes: int, origin_bytes: int = 0,
                  price_scale: float = 1.0) -> bytes:
        """The function's one argument: the msgpack map, completed with the edge's byte counters
        (and the batch's price multiplier where the mode prices prefetches)."""
        counters = MapFields.of(self.mode.counter_args(requested_bytes, prefetch_bytes, origin_bytes, price_scale))
        return (prep.fields + counters).packed()

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
        return BatchOutcome.of_reply(reply)

    def _fcall(self, fn: str, args: list[object]) -> list[object]:
        try:
            return self.client.fcall(fn, len(self.keys), *self.keys, *args)
        except redis.ResponseError as e:
            if "function" not in str(e).lower():
                raise
            self.load()  # a fresh or restarted server has no library yet
            return self.client.fcall(fn, len(self.keys), *self.keys, *args)

    def entries(self) -> dict[str, tuple[int, bool]]:
        """Cached content id -> (size, still an unrequested prefetch)."""
        return {cid: (size, pending) for cid, size, pending in self.mode.entries(self.client, self.keys)}

    def occupancy(self) -> tuple[int, int, int]:
        """(entries, accounted weight, actual weight) - equal when accounting is exact.

        An eviction index that does not list exactly the entries (demand mode) counts as inexact.
        """
        ents = self.mode.entries(self.client, self.keys)
        used = int(float(self.client.hget(self.keys[-1], "used") or 0))
        actual = len(ents) if self.settings.unit == "items" else sum(s for _, s, _ in ents)
        if not self.mode.index_consistent(self.client, self.keys, len(ents)):
            actual = -1
        return len(ents), used, actual

    def pending_prefetches(self) -> int:
        """Entries prefetched but not requested yet."""
        return sum(1 for _, _, pending in self.mode.entries(self.client, self.keys) if pending)

    def predictions(self, user_id: str) -> list[str]:
        """The user's current top predicted content ids (empty when expired or unknown)."""
        raw: bytes | None = self.client.get(self.ns.key(f"user:{user_id}"))  # type: ignore[assignment]
        return raw.decode().split(";", 1)[0].split(",") if raw else []


def _chunks(seq: list[bytes], n: int) -> list[list[bytes]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]

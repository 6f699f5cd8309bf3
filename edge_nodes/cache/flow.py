"""The live delivery flow of one edge, a batch of requests at a time.

Per request, in order (on the server, atomically): hit -> deliver from the edge cache;
miss -> fetch from the origin, admit; then refresh the user's predictions (`user:<id>`) and
prefetch them within the budget. Predictions for the whole batch are computed first, with
numpy, from each request's own history (what the user watched up to and including it).
If Redis is down the batch is served from the origin and counted as misses and errors; a
breaker with exponential backoff decides when to try the server again. With a shadow
(`cache.origin_shadow`, shadow.py) the edge prefetches only while its origin bytes stay within
`cache.origin_ratio` x the shadow's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff

from edge_nodes.cache.accounting import EdgeStats
from edge_nodes.cache.batch import BatchOutcome, CacheBatch
from edge_nodes.cache.edge_cache import EdgeCache, PendingBatch, PreparedBatch
from edge_nodes.cache.shadow import OriginLimit, ShadowCache
from edge_nodes.devices import DEVICES
from edge_nodes.predictor import Predictor
from monitoring import metrics

log = logging.getLogger(__name__)

OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class RequestBatch:
    """Consecutive requests of one edge's stream, starting at stream position `first`."""

    first: int
    item: np.ndarray        # int64 item_idx
    user: np.ndarray        # str user ids
    device_idx: np.ndarray  # int
    hour: np.ndarray        # int 0..23
    hist: np.ndarray        # (n, L) item_idx history including this request, -1 padded
    ts: np.ndarray          # datetime64 (for degraded spans)
    at: np.ndarray | None = None  # each user's events the edge knows by this request, it included (None: all)

    def __len__(self) -> int:
        return int(self.item.shape[0])


@dataclass(frozen=True)
class ItemLookup:
    """Public catalog lookups by item_idx; index -1 maps to the no-item sentinel."""

    ids: np.ndarray    # str content ids, with '-' appended
    sizes: np.ndarray  # int64 bytes, with 0 appended

    @classmethod
    def of(cls, content_ids: np.ndarray, size_bytes: np.ndarray) -> ItemLookup:
        return cls(np.append(content_ids.astype(str), "-"), np.append(size_bytes.astype(np.int64), 0))


@dataclass(frozen=True)
class Prepared:
    """A batch with its predictions made and encoded, ready to send."""

    batch: RequestBatch
    sizes: np.ndarray
    enc: PreparedBatch
    shadow_bytes: int = 0  # the shadow's origin bytes through the batch's last request


class Breaker:
    """Skip Redis after a failure until a backoff delay has passed (clock injected)."""

    def __init__(self, backoff: AbstractBackoff | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or ExponentialBackoff(cap=2.0, base=0.05)
        self.clock = clock
        self.failures = 0
        self.retry_at = 0.0

    def allow(self) -> bool:
        return self.failures == 0 or self.clock() >= self.retry_at

    def failed(self) -> None:
        self.failures += 1
        self.retry_at = self.clock() + self.backoff.compute(self.failures)

    def succeeded(self) -> None:
        if self.failures:
            log.info("Redis is back after %d failed attempts", self.failures)
        self.failures = 0


class EdgeDemand:
    """Edge-level demand: rank-weighted predictions summed over the edge's active users.

    Causal: request j's candidates are scored with the predictions of requests up to and
    including j (earlier batches decay by half per batch). Candidates whose demand is below
    `min_demand` are not prefetched; 0 keeps every prediction.
    """

    def __init__(self, items: int, min_demand: float, decay: float = 0.5) -> None:
        self.score = np.zeros(items + 1)  # last slot: the -1 sentinel
        self.min_demand, self.decay = min_demand, decay

    def filter(self, preds: np.ndarray) -> np.ndarray:
        """Drop candidates with too little demand so far; updates the running demand."""
        n, k = preds.shape
        flat = preds.ravel()
        w = np.tile(1.0 / np.arange(1, k + 1), n)
        order = np.argsort(flat, kind="stable")  # per item, in request order
        cum = np.empty(flat.size)
        sw = w[order]
        csum = np.cumsum(sw)
        start = np.r_[0, np.flatnonzero(np.diff(flat[order])) + 1]
        base = np.repeat(csum[start] - sw[start], np.diff(np.r_[start, flat.size]))
        cum[order] = csum - base
        demand = self.score[flat] + cum
        np.add.at(self.score, flat, w)
        self.score *= self.decay
        if self.min_demand <= 0:
            return preds
        return np.where((demand >= self.min_demand).reshape(n, k), preds, -1)


class DeliveryFlow:
    """Serves one edge's batches for one policy through its EdgeCache and predictor.

    `shadow`: the edge's shadow cache, shared by flows serving the same stream; by default one
    of the cache settings' `origin_shadow` (none when it is "none" or nothing is prefetched).
    """

    def __init__(self, edge_id: str, policy: str, cache: EdgeCache, catalog: ItemLookup,
                 predictor: Predictor | None, top_k: int, breaker: Breaker | None = None,
                 min_demand: float = 0.0, shadow: ShadowCache | None = None) -> None:
        self.edge_id, self.policy, self.cache, self.catalog = edge_id, policy, cache, catalog
        self.predictor, self.top_k = predictor, top_k if predictor is not None else 0
        self.breaker = breaker or Breaker()
        self.stats = EdgeStats()
        self.hits: list[np.ndarray] = []  # per-request hit flags, batch by batch (outages: False)
        self.demand = EdgeDemand(catalog.sizes.size - 1, min_demand)
        self._inflight: tuple[Prepared, PendingBatch | None] | None = None
        shadow = shadow if shadow is not None or self.top_k == 0 else shadow_of(cache, catalog)
        s = cache.settings
        self.limit = None if shadow is None else OriginLimit(shadow, s.origin_ratio, s.price_gain)

    def serve(self, batch: RequestBatch) -> np.ndarray:
        """Serve a batch; per-request hit flags (all False for requests served during an outage)."""
        self.submit(self.prepare(batch))
        return self.finish()

    def serve_stream(self, batches: Iterable[RequestBatch],
                     on_batch: Callable[[RequestBatch], None] | None = None) -> None:
        """Serve batches in order, predicting and encoding batch i+1 while the server runs batch i.

        Same outcome as `serve` one batch at a time: a batch is sent only after the previous
        reply is counted (it needs the running byte counters); `on_batch` runs just before.
        """
        try:
            for batch in batches:
                prep = self.prepare(batch)
                self.finish()
                if on_batch is not None:
                    on_batch(batch)
                self.submit(prep)
        finally:
            self.finish()  # also when a prediction fails: the batch in flight is still counted

    def prepare(self, batch: RequestBatch) -> Prepared:
        """Predictions for the batch and its encoding for the server (no server call)."""
        preds, probs = self._predict(batch)
        sizes = self.catalog.sizes[batch.item]
        flat = preds.ravel()
        ids, all_sizes = self.catalog.ids, self.catalog.sizes
        shadow = None if self.limit is None else self.limit.shadow.observe(batch.first, batch.item, sizes)
        enc = self.cache.prepare(CacheBatch(
            items=ids[batch.item].tolist(), sizes=sizes.tolist(), users=batch.user.tolist(),
            preds=ids[flat].tolist(), pred_sizes=all_sizes[flat].tolist(), k=self.top_k, pred_probs=probs.ravel(),
            shadow_origin=shadow))
        return Prepared(batch, sizes, enc, 0 if self.limit is None else self.limit.shadow.origin_bytes)

    def submit(self, prep: Prepared) -> None:
        """Send a prepared batch (or, while the breaker is open, mark it for the origin)."""
        pending = None
        if self.breaker.allow():
            s = self.stats
            scale = 1.0 if self.limit is None else self.limit.price_scale(s.origin_bytes, s.requested_bytes)
            pending = self.cache.send(prep.enc, s.requested_bytes, s.prefetch_bytes, s.origin_bytes, scale)
        self._inflight = (prep, pending)

    def finish(self) -> np.ndarray:
        """Read and count the submitted batch's outcome; its hit flags (empty if none was submitted)."""
        if self._inflight is None:
            return np.zeros(0, dtype=bool)
        (prep, pending), self._inflight = self._inflight, None
        batch, sizes = prep.batch, prep.sizes
        outcome = self._receive(batch, pending) if pending is not None else None
        if self.limit is not None:
            self.limit.served(prep.shadow_bytes)
        if outcome is None:
            self._count_outage(batch, sizes)
            self.hits.append(np.zeros(len(batch), dtype=bool))
        else:
            self._count(batch, sizes, outcome)
            self.hits.append(outcome.hits)
        return self.hits[-1]

    def _predict(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        """Each request's top-k predictions and their probabilities, from its own history."""
        if self.predictor is None or self.top_k == 0:
            empty = np.empty((len(batch), 0), dtype=np.int64)
            return empty, empty.astype(np.float64)
        t0 = time.perf_counter()
        preds, probs = self.predictor.predict_scored(batch.hist, batch.device_idx, batch.hour, self.top_k,
                                                     users=batch.user, at=batch.at, ts=batch.ts)
        preds = self.demand.filter(preds)
        probs = np.where(preds >= 0, probs, 0.0)
        metrics.observe_prediction(self.edge_id, time.perf_counter() - t0)
        return preds, probs

    def _receive(self, batch: RequestBatch, pending: PendingBatch) -> BatchOutcome | None:
        try:
            out = self.cache.receive(pending)
        except OUTAGE_ERRORS as e:
            log.warning("edge %s: Redis unavailable (%s); serving %d requests from the origin",
                        self.edge_id, e.__class__.__name__, len(batch))
            self.breaker.failed()
            return None
        self.breaker.succeeded()
        return out

    def _count(self, batch: RequestBatch, sizes: np.ndarray, out: BatchOutcome) -> None:
        s, n, hits = self.stats, len(batch), int(out.hits.sum())
        hit_bytes = int(sizes[out.hits].sum())
        s.requests += n
        s.hits += hits
        s.requested_bytes += int(sizes.sum())
        s.hit_bytes += hit_bytes
        s.prefetched += out.prefetched
        s.prefetch_bytes += out.prefetched_bytes
        s.prefetch_used += out.prefetch_used
        s.prefetch_wasted += out.prefetch_wasted
        self._metrics(hits, n - hits, int(sizes.sum()) - hit_bytes, out.prefetched, out.prefetched_bytes)

    def _count_outage(self, batch: RequestBatch, sizes: np.ndarray) -> None:
        s, n = self.stats, len(batch)
        s.requests += n
        s.errors += n
        s.requested_bytes += int(sizes.sum())
        s.record_outage(batch.first, n, str(batch.ts[0]), str(batch.ts[-1]))
        metrics.record_redis_error(self.edge_id)
        self._metrics(0, n, int(sizes.sum()), 0, 0)

    def _metrics(self, hits: int, misses: int, miss_bytes: int, prefetched: int, prefetch_bytes: int) -> None:
        """The batch's deltas of self.stats, to Prometheus (prefetched bytes count as origin traffic)."""
        e, p = self.edge_id, self.policy
        metrics.record_requests(e, p, hits, misses)
        metrics.record_origin_bytes(e, p, miss_bytes)
        if prefetched or prefetch_bytes:
            metrics.record_prefetch(e, p, prefetched, prefetch_bytes)


def shadow_of(cache: EdgeCache, catalog: ItemLookup,
              known: tuple[dict[str, tuple[np.ndarray, dict[str, Any]]], np.ndarray] | None = None) -> ShadowCache | None:
    """The shadow the cache's settings ask for (sized in bytes by the catalog's mean size), or None.

    `known`: (policy -> (hit flags, params), the stream's items) of library caches already run
    on the whole stream (the replay's baselines): read instead of simulated again where they match.
    """
    s = cache.settings
    if s.origin_shadow == "none":
        return None
    shadow = ShadowCache(s.origin_shadow, s.capacity, s.unit, float(catalog.sizes[:-1].mean()), catalog.sizes.size)
    if known is not None:
        shadow.use_known(known[0], catalog.sizes[known[1]])
    return shadow


def record_activity(edge_id: str, device_idx: np.ndarray) -> None:
    """Count viewing events by device once per edge stream (not once per policy)."""
    counts = np.bincount(device_idx, minlength=len(DEVICES))
    for device, c in zip(DEVICES, counts.tolist(), strict=False):
        if c:
            metrics.record_user_events(edge_id, device, c)

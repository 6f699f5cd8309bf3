"""Every predictive policy of one edge served in lockstep, batch by batch, sharing what they share.

The models that read the same side information (the edge's user histories and the re-summed
co-occurrence counts: federated, centralized, personalized) need the same features for a batch
of requests; on MovieLens computing them was half of the replay, once per policy and per pass
(serving, prediction quality, calibration's test-period measure). Served one policy after the
other, a batch's features would have to be kept for the whole stream (~1 GB per edge at 1M
ratings); served in lockstep, one batch's are kept. Each policy still has its own cache, from
empty: its own key prefix in the edge's database (or prefix), flushed before and after.

Per batch, each policy's flow predicts and encodes it, reads its previous batch's reply and
sends it (`DeliveryFlow.serve_stream`'s order, so a policy's outcome is what serving it alone
gives; the edge's shadow cache, `cache.origin_shadow`, is simulated once for all of them); while the server runs the batches, the prediction-quality sample rows of the batch get
their top-K from the same features. The served predictions are recorded raw (before the
calibrator), and calibration's test-period measure reads its sample rows from them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_nodes.cache.accounting import EdgeStats
from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.flow import DeliveryFlow, ItemLookup, RequestBatch, shadow_of
from edge_nodes.cache.redis_conn import EdgeNamespace
from edge_nodes.learning.predictors import ModelPredictor
from edge_nodes.learning.side import SparseSide
from edge_nodes.predictor import Predictor
from simulation.replay.calibration import Isotonic, test_rows
from simulation.replay.policies import ReplaySettings
from simulation.replay.prediction_quality import MAX_SAMPLES_PER_EDGE, sampled_rows, score_ranking
from simulation.replay.streams import EdgeStream
from simulation.replay.timeline import Timeline

log = logging.getLogger(__name__)


class SideSlot:
    """The side features of the batch being served, made by the first model of its group that asks."""

    def __init__(self) -> None:
        self.batch: RequestBatch | None = None
        self.side: SparseSide | None = None
        self.made = False

    def start(self, batch: RequestBatch) -> None:
        self.batch, self.side, self.made = batch, None, False

    def get(self, model: ModelPredictor, hist: np.ndarray, users: np.ndarray | None, at: np.ndarray | None,
            ts: np.ndarray | None) -> SparseSide | None:
        """The batch's features when `hist` is the batch's own; else the model's own for these rows."""
        if self.batch is None or hist is not self.batch.hist:
            return model.side_of(hist, users, at, ts)
        if not self.made:
            self.side, self.made = model.side_of(hist, users, at, ts), True
        return self.side


class LockstepPredictor:
    """A policy's predictor as its flow sees it: side features from the group's slot, the served
    batch's raw predictions recorded, probabilities through the calibrator (ranking unchanged)."""

    def __init__(self, base: Predictor, slot: SideSlot | None, calibrator: Isotonic | None, rows: int,
                 k: int) -> None:
        self.base, self.slot, self.calibrator, self.name = base, slot, calibrator, base.name
        self.ids = np.full((rows, k), -1, dtype=np.int64)  # raw predictions of every served request
        self.probs = np.zeros((rows, k))

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return self.predict_scored(hist, device_idx, hour, k, users=users, at=at, ts=ts)[0]

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.slot is not None and isinstance(self.base, ModelPredictor):
            side = self.slot.get(self.base, hist, users, at, ts)
            ids, probs = self.base.predict_scored(hist, device_idx, hour, k, users=users, at=at, ts=ts, side=side)
        else:
            ids, probs = self.base.predict_scored(hist, device_idx, hour, k, users=users, at=at, ts=ts)
        batch = None if self.slot is None else self.slot.batch
        if batch is not None and hist is batch.hist and k == self.ids.shape[1]:
            self.ids[batch.first:batch.first + len(batch)], self.probs[batch.first:batch.first + len(batch)] = ids, probs
        if self.calibrator is not None:
            probs = np.where(ids >= 0, self.calibrator(probs), 0.0)
        return ids, probs


@dataclass
class Served:
    """One policy's outcome on the edge: cache stats, hit flags, prediction quality, test pairs."""

    stats: EdgeStats
    limit: dict[str, object] | None  # the origin limit's end state (shadow.OriginLimit.summary)
    hits: np.ndarray
    quality: tuple[int, float, int]
    test_pairs: tuple[np.ndarray, np.ndarray]


def serve_lockstep(stream: EdgeStream, catalog: ItemLookup, ns: EdgeNamespace, settings: ReplaySettings,
                   predictors: dict[str, Predictor], calibrators: dict[str, Isotonic | None], quality_k: int,
                   timeline: Timeline | None = None,
                   reactive: dict[str, tuple[np.ndarray, dict[str, Any]]] | None = None) -> dict[str, Served]:
    """Serve the stream through every policy at once, each on its own cache under `ns`.

    `reactive`: the library policies already run on this stream (policies.replay_reactive); the
    edge's shadow reads their misses instead of simulating them again (the same answers: tested).
    """
    slots: dict[tuple[int, int], SideSlot] = {}
    slot_of: dict[str, SideSlot | None] = {}
    for name, p in predictors.items():
        side = p.side if isinstance(p, ModelPredictor) and p.trained_with_side else None
        slot_of[name] = None if side is None else slots.setdefault((id(side.history), id(side.table)), SideSlot())
    served = {name: LockstepPredictor(p, slot_of[name] or SideSlot(), calibrators.get(name), len(stream),
                                      settings.top_k) for name, p in predictors.items()}
    caches = {name: EdgeCache(EdgeNamespace(ns.edge_id, ns.client, f"{ns.prefix}policy:{name}:"), settings.cache)
              for name in predictors}
    for name, cache in caches.items():
        _flush(cache, name)
    shadow = (shadow_of(next(iter(caches.values())), catalog, None if reactive is None else (reactive, stream.item))
              if caches and settings.top_k else None)
    flows = {name: DeliveryFlow(stream.edge_id, name, caches[name], catalog, served[name], settings.top_k,
                                min_demand=settings.min_demand, shadow=shadow) for name in predictors}
    q_idx, q_next = sampled_rows(stream, MAX_SAMPLES_PER_EDGE)
    quality = {name: np.full((q_idx.size, quality_k), -1, dtype=np.int64) for name in predictors}
    try:
        for batch in stream.batches(settings.batch_size):
            for s in {id(s): s for s in (p.slot for p in served.values()) if s is not None}.values():
                s.start(batch)
            for flow in flows.values():
                prep = flow.prepare(batch)
                flow.finish()
                flow.submit(prep)
            qa, qb = np.searchsorted(q_idx, [batch.first, batch.first + len(batch)])
            if qb > qa:
                for name, p in served.items():
                    quality[name][qa:qb] = _ranked(p, batch, q_idx[qa:qb] - batch.first, quality_k)
    finally:
        for flow in flows.values():
            flow.finish()
        for name, cache in caches.items():
            _flush(cache, name)
    t_idx, t_next = test_rows(stream)
    out = {}
    for name, flow in flows.items():
        hits = np.concatenate(flow.hits) if flow.hits else np.zeros(0, dtype=bool)
        if timeline is not None and flow.hits:
            timeline.add(name, stream.ts, hits)
        p = served[name]
        q = score_ranking(quality[name], stream.item[q_next]) if q_idx.size else (0, 0.0, 0)
        pairs = (p.probs[t_idx].ravel(), (p.ids[t_idx] == stream.item[t_next][:, None]).ravel())
        out[name] = Served(flow.stats, None if flow.limit is None else flow.limit.summary(), hits, q, pairs)
    return out


def _ranked(p: LockstepPredictor, batch: RequestBatch, local: np.ndarray, k: int) -> np.ndarray:
    """Top-k of the batch's rows `local`, from the batch's side features when the model shares them."""
    base, at = p.base, None if batch.at is None else batch.at[local]
    args = (batch.hist[local], batch.device_idx[local], batch.hour[local], k)
    if isinstance(base, ModelPredictor) and p.slot is not None and p.slot.batch is batch:
        side = p.slot.get(base, batch.hist, batch.user, batch.at, batch.ts)
        return base.predict(*args, users=batch.user[local], at=at, ts=batch.ts[local],
                            side=None if side is None else side.rows(local, len(batch)))
    return base.predict(*args, users=batch.user[local], at=at, ts=batch.ts[local])


def _flush(cache: EdgeCache, name: str) -> None:
    try:
        cache.flush()
    except Exception as e:  # noqa: BLE001 - an unreachable server is handled by the flow
        log.warning("edge %s: could not flush the cache of %s (%s)", cache.ns.edge_id, name, e)


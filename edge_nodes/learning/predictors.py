"""Next-content predictors behind the Predictor protocol (edge_nodes/predictor.py); the replay
looks them up by policy name in simulation/replay/predictors.py.

A predictor maps a batch of user states - the last items watched (oldest first, -1 padded,
the current request included), device index and hour - to each user's top-k next item_idx
(-1 where it has nothing to say) and, in `predict_scored`, the probability of each
(the model's softmax, the Markov transition probability, the item's share of views).
All of them are vectorized over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from edge_nodes.errors import PredictorError
from edge_nodes.learning import model
from edge_nodes.learning.side import SideInfo, SparseSide

Side = SparseSide | tuple[np.ndarray, np.ndarray] | None  # side features of the rows (side.py), or none
TopK = Callable[[Any, Any, np.ndarray, np.ndarray, np.ndarray, int, Side], np.ndarray]
TopKProbs = Callable[[Any, Any, np.ndarray, np.ndarray, np.ndarray, int, Side], tuple[np.ndarray, np.ndarray]]


def first_k_unique(cand: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per row, the first k distinct non-negative candidates not in `exclude` (-1 padded)."""
    return first_k_unique_scored(cand, np.zeros(cand.shape), k, exclude)[0]


def first_k_unique_scored(cand: np.ndarray, prob: np.ndarray, k: int,
                          exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """first_k_unique, carrying each candidate's probability along (0 where -1)."""
    bad = cand < 0
    bad |= np.tril(cand[:, :, None] == cand[:, None, :], -1).any(-1)  # later duplicates
    if exclude is not None:
        bad |= (cand[:, :, None] == exclude[:, None, :]).any(-1)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(cand, order, axis=1)
    p = np.take_along_axis(prob, order, axis=1).astype(np.float64)
    drop = np.take_along_axis(bad, order, axis=1)
    picked[drop], p[drop] = -1, 0.0
    if picked.shape[1] < k:
        pad = ((0, 0), (0, k - picked.shape[1]))
        picked, p = np.pad(picked, pad, constant_values=-1), np.pad(p, pad)
    return picked, p


class PopularityPredictor:
    """The edge's most popular items before the cut, minus what the user just watched."""

    name = "popularity"

    def __init__(self, scores: np.ndarray) -> None:
        self.ranked = np.argsort(-scores, kind="stable").astype(np.int64)
        total = float(np.sum(scores))
        self.share = scores / total if total > 0 else np.zeros(scores.size)

    @classmethod
    def from_table(cls, path: Path, items: int) -> PopularityPredictor:
        t = _read(path, ("item_idx", "count"))
        scores = np.zeros(items)
        idx = t["item_idx"].to_numpy()
        score_col = "recency_score" if "recency_score" in t.column_names else "count"
        scores[idx[idx < items]] = t[score_col].to_numpy()[idx < items]
        return cls(scores)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return self.predict_scored(hist, device_idx, hour, k)[0]

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        top = self.ranked[:k + hist.shape[1]]
        shape = (hist.shape[0], top.size)
        return first_k_unique_scored(np.broadcast_to(top, shape), np.broadcast_to(self.share[top], shape), k, hist)


@dataclass(frozen=True)
class TransitionCounts:
    """What markov_sql's table was ranked from: transition counts and the edge's view counts."""

    prev: np.ndarray   # int64 prev_idx per (prev, next) pair
    next: np.ndarray   # int64 next_idx
    count: np.ndarray  # float64 transitions
    views: np.ndarray  # (items,) float64 view counts (features/popularity `count`)

    def without(self, hist: np.ndarray, label: np.ndarray) -> TransitionCounts:
        """The counts minus the transitions (last window item -> label) of these training events."""
        items = self.views.size
        last, label = np.asarray(hist, np.int64)[:, -1], np.asarray(label, np.int64)
        ok = (last >= 0) & (label >= 0)
        keys = np.concatenate([self.prev * items + self.next, last[ok] * items + label[ok]])
        uniq, inv = np.unique(keys, return_inverse=True)
        left = np.bincount(inv, weights=np.r_[self.count, -np.ones(int(ok.sum()))], minlength=uniq.size)
        keep = left > 0.5
        return TransitionCounts(uniq[keep] // items, uniq[keep] % items, left[keep], self.views)

    def ranked(self, top_n: int) -> tuple[np.ndarray, np.ndarray]:
        """MARKOV_SQL's table in numpy (spark_features/markov.py): per previous item its top-N next
        items by count (ties to the smaller item_idx) with P(next | prev), then the edge's most
        viewed items not among them with their view share; (items, N) ids -1 padded, and probs."""
        items = self.views.size
        order = np.lexsort((self.next, -self.count, self.prev))
        prev, nxt, count = self.prev[order], self.next[order], self.count[order]
        start = np.r_[0, np.flatnonzero(np.diff(prev)) + 1] if prev.size else np.empty(0, np.int64)
        lens = np.diff(np.r_[start, prev.size])
        rank = np.arange(prev.size) - np.repeat(start, lens)
        prob = count / np.repeat(np.add.reduceat(count, start), lens) if prev.size else count
        top = rank < top_n
        table = np.full((items, top_n), -1, dtype=np.int64)
        probs = np.zeros((items, top_n))
        table[prev[top], rank[top]] = nxt[top]
        probs[prev[top], rank[top]] = prob[top]
        viewed = np.flatnonzero(self.views > 0)
        pop = viewed[np.lexsort((viewed, -self.views[viewed]))][:2 * top_n]
        share = self.views[pop] / self.views.sum() if pop.size else np.zeros(0)
        rows = np.unique(prev)
        cand = np.concatenate([table[rows], np.broadcast_to(pop, (rows.size, pop.size))], axis=1)
        cprob = np.concatenate([probs[rows], np.broadcast_to(share, (rows.size, pop.size))], axis=1)
        table[rows], probs[rows] = first_k_unique_scored(cand, cprob, top_n)
        return table, probs


class MarkovPredictor:
    """The Spark SQL baseline: top-N next items after the user's last item, popularity fill-in."""

    name = "markov_sql"

    def __init__(self, table: np.ndarray, fallback: PopularityPredictor, probs: np.ndarray | None = None,
                 counts: TransitionCounts | None = None) -> None:
        self.table = table  # (items, N) next item_idx by rank, -1 padded
        self.probs = probs if probs is not None else np.where(table >= 0, 1.0 / (1 + np.arange(table.shape[1])), 0.0)
        self.fallback = fallback
        self.counts = counts  # what the table was ranked from, when read (the held-out view needs it)

    def without(self, hist: np.ndarray, label: np.ndarray) -> MarkovPredictor:
        """The predictor ranked from counts without these training events' transitions (needs counts)."""
        if self.counts is None:
            raise PredictorError("markov_sql was built without its transition counts; read them with with_counts")
        counts = self.counts.without(hist, label)
        table, probs = counts.ranked(self.table.shape[1])
        return MarkovPredictor(table, self.fallback, probs, counts)

    def with_counts(self, transitions: Path, popularity: Path) -> MarkovPredictor:
        """This predictor, carrying the counts its table was ranked from (features/transitions, popularity)."""
        t = _read(transitions, ("prev_idx", "next_idx", "count"))
        v = _read(popularity, ("item_idx", "count"))
        items = self.table.shape[0]
        views = np.zeros(items)
        idx = v["item_idx"].to_numpy().astype(np.int64)
        views[idx[idx < items]] = v["count"].to_numpy().astype(np.float64)[idx < items]
        counts = TransitionCounts(t["prev_idx"].to_numpy().astype(np.int64), t["next_idx"].to_numpy().astype(np.int64),
                                  t["count"].to_numpy().astype(np.float64), views)
        return MarkovPredictor(self.table, self.fallback, self.probs, counts)

    @classmethod
    def from_table(cls, path: Path, items: int, fallback: PopularityPredictor) -> MarkovPredictor:
        t = _read(path, ("prev_idx", "next_idx", "rank"))
        prev, nxt, rank = (t[c].to_numpy().astype(np.int64) for c in ("prev_idx", "next_idx", "rank"))
        prob = t["prob"].to_numpy().astype(np.float64) if "prob" in t.column_names else 1.0 / rank
        width = int(rank.max()) if rank.size else 1
        table = np.full((items, width), -1, dtype=np.int64)
        probs = np.zeros((items, width))
        ok = (prev >= 0) & (prev < items) & (rank >= 1)
        table[prev[ok], rank[ok] - 1] = nxt[ok]
        probs[prev[ok], rank[ok] - 1] = prob[ok]
        return cls(table, fallback, probs)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return self.predict_scored(hist, device_idx, hour, k)[0]

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        last = hist[:, -1]
        known = (last >= 0)[:, None]
        rows = np.where(known, self.table[np.maximum(last, 0)], -1)
        rprob = np.where(known, self.probs[np.maximum(last, 0)], 0.0)
        pop, pprob = self.fallback.predict_scored(hist, device_idx, hour, k)
        return first_k_unique_scored(np.concatenate([rows, pop], axis=1),
                                     np.concatenate([rprob, pprob], axis=1), k, hist[:, -1:])


class ModelPredictor:
    """A trained next-content model (federated, local-only or centralized) via edge_nodes.learning.model.

    With `side` (the edge's user histories and co-occurrence table, side.py) a model trained with
    side information (nonzero `side_w`) scores what the edge knows beyond the window too; `users`
    then names each row's user (unknown users and calls without `users` see only the window).
    """

    name = "model"

    def __init__(self, params: Any, spec: Any, top_k: TopK, name: str = "model",
                 top_k_probs: TopKProbs | None = None, side: SideInfo | None = None) -> None:
        self.params, self.spec, self._top_k, self.name = params, spec, top_k, name
        self._top_k_probs, self.side = top_k_probs, side

    @classmethod
    def from_npz(cls, path: Path, name: str = "model", side: SideInfo | None = None) -> ModelPredictor:
        if not path.is_file():
            raise PredictorError(f"model file {path} is missing; run `edgecache train` first")
        params, spec = model.load_params(path)
        return cls(params, spec, model.top_k, name, model.top_k_with_probs, side)

    @property
    def trained_with_side(self) -> bool:
        """Nonzero side weights: the model was trained with side information (model.side_info)."""
        return bool(np.any(model.named(self.params, self.spec)["side_w"]))

    def side_of(self, hist: np.ndarray, users: np.ndarray | None, at: np.ndarray | None,
                ts: np.ndarray | None) -> SparseSide | None:
        """The rows' side features as this model reads them (None: it reads none). Models that share
        a SideInfo get the same features: the replay computes them once and passes them as `side`."""
        if self.side is None or not self.trained_with_side:
            return None
        return self.side.sparse(hist, users, at, ts)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None, side: SparseSide | None = None) -> np.ndarray:
        """`side`: the rows' side_of(...) when already computed (else computed here)."""
        if side is None:
            side = self.side_of(hist, users, at, ts)
        # one more than asked: the item just requested is dropped from the candidates
        out = np.asarray(self._top_k(self.params, self.spec, hist, device_idx, hour, k + 1, side), dtype=np.int64)
        return first_k_unique(out, k, hist[:, -1:])

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None, side: SparseSide | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The model's softmax probabilities (a model without them: 1/rank); `side` as in predict."""
        if self._top_k_probs is None:
            ids = self.predict(hist, device_idx, hour, k, users=users, at=at, ts=ts, side=side)
            return ids, np.where(ids >= 0, 1.0 / (1 + np.arange(k)), 0.0)
        if side is None:
            side = self.side_of(hist, users, at, ts)
        ids, probs = self._top_k_probs(self.params, self.spec, hist, device_idx, hour, k + 1, side)
        return first_k_unique_scored(np.asarray(ids, dtype=np.int64), np.asarray(probs), k, hist[:, -1:])


def _read(path: Path, columns: tuple[str, ...]) -> Any:
    if not path.exists():
        raise PredictorError(f"feature table {path} is missing; run `edgecache features` first")
    t = pq.read_table(path)
    missing = [c for c in columns if c not in t.column_names]
    if missing:
        raise PredictorError(f"{path} lacks columns {missing}; it has {t.column_names}")
    return t

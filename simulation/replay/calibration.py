"""Do predicted probabilities mean what they say? Reliability bins, ECE, and an isotonic calibrator.

A prediction (item, p) made after a user's request is right when that user's next request is
the item. The calibrator is fitted per edge and predictor on the edge's held-out training slice
(the last `model.eval_fraction` of its examples by time, the slice training evaluates on) and
never sees the test period; reliability and the expected calibration error (ECE) are measured on
the test period, before and after calibration, on a strided sample like prediction quality.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_nodes.learning import model
from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_predictor import CoocPredictor
from edge_nodes.learning.cooc_table import CoocTable
from edge_nodes.learning.predictors import MarkovPredictor, ModelPredictor
from edge_nodes.learning.side import SideInfo, SparseSide
from edge_nodes.learning.task import load_examples, split_by_time
from edge_nodes.predictor import Predictor
from simulation.replay.prediction_quality import sampled_rows
from simulation.replay.streams import EdgeStream

# Reliability bins: fine where top-k probabilities mostly fall (a softmax over thousands of items).
BIN_EDGES = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0])
FIT_BINS = 50                 # quantile bins of the held-out predictions before pooling
MIN_FIT = 200                 # fewer held-out predictions than this: no calibrator
MAX_FIT_EXAMPLES = 4000       # held-out examples used per edge (strided, deterministic)
MAX_TEST_SAMPLES = 2500       # test requests measured per edge (strided, deterministic)
FIT_ON = ("each edge's held-out training slice (last model.eval_fraction of its examples by time), "
          "its own events taken out of the transition and co-occurrence counts the predictor reads")


def pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the weighted non-decreasing fit to y (a few dozen points)."""
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2 if w2 > 0 else vals[-1]
            n = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v, w2, n
    return np.repeat(vals, sizes)


@dataclass(frozen=True)
class Isotonic:
    """A monotone map from predicted to observed probability (interpolated between knots)."""

    x: np.ndarray
    y: np.ndarray
    examples: int

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return np.where(p > 0, np.interp(p, self.x, self.y), 0.0)


def fit_isotonic(p: np.ndarray, hit: np.ndarray) -> Isotonic | None:
    """Isotonic regression of hit on p over quantile bins of p; None with too little data."""
    keep = p > 0
    p, hit = p[keep], hit[keep].astype(np.float64)
    if p.size < MIN_FIT:
        return None
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(FIT_BINS, p.size // 20))
    mean_p = np.array([p[g].mean() for g in groups])
    rate = pav(np.array([hit[g].mean() for g in groups]), np.array([g.size for g in groups], dtype=np.float64))
    return Isotonic(mean_p, rate, int(p.size))


@dataclass
class Reliability:
    """Summed reliability-bin counts: predictions, their probabilities, and how many came true."""

    n: np.ndarray = field(default_factory=lambda: np.zeros(BIN_EDGES.size - 1))
    sum_p: np.ndarray = field(default_factory=lambda: np.zeros(BIN_EDGES.size - 1))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(BIN_EDGES.size - 1))

    def add(self, p: np.ndarray, hit: np.ndarray) -> Reliability:
        keep = p > 0
        b = np.clip(np.searchsorted(BIN_EDGES, p[keep], side="left") - 1, 0, BIN_EDGES.size - 2)
        self.n += np.bincount(b, minlength=self.n.size)
        self.sum_p += np.bincount(b, weights=p[keep], minlength=self.n.size)
        self.hits += np.bincount(b, weights=hit[keep].astype(np.float64), minlength=self.n.size)
        return self

    def merge(self, other: Reliability) -> Reliability:
        self.n += other.n
        self.sum_p += other.sum_p
        self.hits += other.hits
        return self

    def ece(self) -> float | None:
        """Expected calibration error: sum over bins of share x |mean predicted - observed|."""
        total = self.n.sum()
        if total == 0:
            return None
        return round(float(np.abs(self.sum_p - self.hits).sum() / total), 6)

    def rows(self) -> list[dict[str, Any]]:
        return [{"lo": float(lo), "hi": float(hi), "n": int(n), "predicted": round(sp / n, 6), "observed": round(h / n, 6)}
                for lo, hi, n, sp, h in zip(BIN_EDGES[:-1], BIN_EDGES[1:], self.n, self.sum_p, self.hits, strict=True)
                if n > 0]


class CalibratedPredictor:
    """A predictor whose probabilities go through a fitted calibrator (ranking unchanged)."""

    def __init__(self, base: Predictor, calibrator: Isotonic) -> None:
        self.base, self.calibrator, self.name = base, calibrator, base.name

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return self.base.predict(hist, device_idx, hour, k, users=users, at=at, ts=ts)

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids, probs = self.base.predict_scored(hist, device_idx, hour, k, users=users, at=at, ts=ts)
        return ids, np.where(ids >= 0, self.calibrator(probs), 0.0)


def _pairs(predictor: Predictor, hist: np.ndarray, device: np.ndarray, hour: np.ndarray, target: np.ndarray,
           k: int, users: np.ndarray, at: np.ndarray | None,
           ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    ids, probs = predictor.predict_scored(hist, device, hour, k, users=users, at=at, ts=ts)
    return probs.ravel(), (ids == target[:, None]).ravel()


@lru_cache(maxsize=1)  # every predictor of an edge calibrates on the same slice: read it once
def _held_out(examples_dir: Path, edge: str, history_len: int,
              eval_fraction: float) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The strided sample (hist, device, hour, label, user, pos, ts), and the whole slice's
    (hist, label, ts); ts as datetime64[ns]."""
    _, held = split_by_time(load_examples(examples_dir, edge, history_len), eval_fraction)
    idx = np.arange(0, len(held), max(1, -(-len(held) // MAX_FIT_EXAMPLES)))
    ts = held.ts.astype("datetime64[s]").astype("datetime64[ns]")
    return (held.hist[idx], held.device[idx], held.hour[idx], held.label[idx], held.user[idx], held.pos[idx],
            ts[idx]), (held.hist, held.label, ts)


def _view_table(table: CoocTable | LiveCounts, hist: np.ndarray, label: np.ndarray, ts: np.ndarray | None,
                symmetric: bool) -> CoocTable | LiveCounts:
    """The table without the slice's events; for counts refreshed after the cut, the slice's
    events are then counted back in as the test period's are, refresh by refresh from its start."""
    ts_s = None if ts is None else np.asarray(ts, "datetime64[ns]").astype(np.int64) / 1e9
    view = table.without(hist, label, symmetric, ts_s)
    if not isinstance(table, LiveCounts) or ts is None or ts.size == 0:
        return view
    return LiveCounts.from_events(view, [(np.c_[hist, label], label, ts)], ts.min(), table.every_days, symmetric)


def held_out_view(predictor: Predictor, hist: np.ndarray, label: np.ndarray, symmetric: bool,
                  ts: np.ndarray | None = None) -> Predictor:
    """`predictor` as it would be had its pair counts not seen these held-out events.

    markov_sql's transitions, itemcf's table and a model's side-information table count the whole
    training period, the held-out slice included: on MovieLens latest-small their held-out hit@10
    was 0.83 and 0.76 against 0.028 and 0.064 on the test period. Taking the slice's own events
    out (TransitionCounts.without, CoocTable.without) leaves what the others counted in the same
    weeks, as the test period would have. Other predictors (and a markov_sql read without its
    counts, from an older run) are returned as they are."""
    if isinstance(predictor, MarkovPredictor) and predictor.counts is not None:
        return predictor.without(hist, label)
    if isinstance(predictor, CoocPredictor):
        return CoocPredictor(_view_table(predictor.table, hist, label, ts, symmetric), predictor.share,
                             predictor.history, predictor.exclude_seen)
    side = getattr(predictor, "side", None)
    if isinstance(predictor, ModelPredictor) and side is not None and side.table is not None:
        view = copy.copy(predictor)
        view.side = SideInfo(side.history, _view_table(side.table, hist, label, ts, symmetric))
        return view
    return predictor


# The last edge's held-out side view: (the model's SideInfo, its view, the sample's features)
_HELD_OUT_SIDE: dict[tuple[Any, ...], tuple[SideInfo, SideInfo, SparseSide]] = {}


def forget_held_out() -> None:
    """Drop the cached held-out slice and view (the end of a replay: a sweep may rewrite the
    examples under the same path, and the view holds a copy of the counts)."""
    _held_out.cache_clear()
    _HELD_OUT_SIDE.clear()


def held_out_features(predictor: ModelPredictor, examples_dir: Path, edge: str, history_len: int,
                      eval_fraction: float, symmetric: bool = False) -> tuple[ModelPredictor, SparseSide | None]:
    """A side-information model's held-out view (held_out_view) and the held-out sample's side
    features in it (None: the model reads none). Models reading the same histories and table
    (federated, centralized, personalized) share both: the view's table (the counts minus the
    slice) and the features are made once per edge, not once per model and side scale."""
    side = predictor.side
    if side is None or side.table is None or not predictor.trained_with_side:
        return predictor, None
    (hist, _, _, _, users, pos, ts), (all_hist, all_label, all_ts) = _held_out(examples_dir, edge, history_len,
                                                                             eval_fraction)
    key = (id(side.history), id(side.table), examples_dir, edge, history_len, eval_fraction, symmetric)
    made = _HELD_OUT_SIDE.get(key)
    if made is None:
        view_side = SideInfo(side.history, _view_table(side.table, all_hist, all_label, all_ts, symmetric))
        made = (side, view_side, view_side.sparse(hist, users, pos, ts))  # `side` kept: its ids stay valid
        _HELD_OUT_SIDE.clear()
        _HELD_OUT_SIDE[key] = made
    view = copy.copy(predictor)
    view.side = made[1]
    return view, made[2]


def held_out_pairs(predictor: Predictor, examples_dir: Path, edge: str, history_len: int, eval_fraction: float,
                   k: int, symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(probability, came true) of the top-k predictions on the edge's held-out training slice."""
    (hist, device, hour, label, users, pos, ts), (all_hist, all_label, all_ts) = _held_out(
        examples_dir, edge, history_len, eval_fraction)
    if isinstance(predictor, ModelPredictor):
        model, feats = held_out_features(predictor, examples_dir, edge, history_len, eval_fraction, symmetric)
        if feats is not None:
            ids, probs = model.predict_scored(hist, device, hour, k, users=users, at=pos, ts=ts, side=feats)
            return probs.ravel(), (ids == label[:, None]).ravel()
    view = held_out_view(predictor, all_hist, all_label, symmetric, all_ts)
    return _pairs(view, hist, device, hour, label, k, users, pos, ts)  # each row sees its user's past only


def test_rows(stream: EdgeStream) -> tuple[np.ndarray, np.ndarray]:
    """The test-period requests calibration is measured on (strided) and their user's next request."""
    return sampled_rows(stream, MAX_TEST_SAMPLES)


def test_pairs(stream: EdgeStream, predictor: Predictor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(probability, came true) of the top-k predictions on a strided sample of the test stream."""
    idx, nxt = test_rows(stream)
    return _pairs(predictor, stream.hist[idx], stream.device_idx[idx], stream.hour[idx], stream.item[nxt], k,
                  stream.user[idx], None if stream.at is None else stream.at[idx], stream.ts[idx])


SIDE_SCALES = (0.5, 1.0, 2.0, 4.0)  # factors tried on the learned side weights


def with_side_scale(predictor: ModelPredictor, scale: float) -> ModelPredictor:
    """A copy of the model whose side part (every side_w: the seen weight and the co-occurrence
    weights) is multiplied by `scale`: one mix of what the edge knows against the embedding part.
    The seen weight scales with the counts, or a larger count weight would lift items the user
    has seen (and on a trace where people do not return, waste slots): on MovieLens, scaling the
    counts alone peaked at hit@10 0.115, the whole side part at 0.119 (itemcf: 0.118)."""
    view = copy.copy(predictor)
    view.params = [np.array(a, copy=True) for a in predictor.params]
    model.named(view.params, view.spec)["side_w"][...] *= scale
    return view


def fit_side_scale(predictor: Predictor, examples_dir: Path, edge: str, history_len: int, eval_fraction: float,
                   k: int, symmetric: bool = False) -> tuple[Predictor, float | None]:
    """For a model that weighs the co-occurrence counts: the factor on its side weights (SIDE_SCALES)
    with the most top-k hits on the edge's held-out view, and the model with it; (predictor,
    None) for any other predictor. The weights were learned beside an embedding part fitted on
    the same years; on the held-out slice, as in the test period, that part knows less and the
    counts (re-summed when `LiveCounts`) more. Ties keep the smaller change (1.0 first)."""
    if not isinstance(predictor, ModelPredictor) or predictor.side is None or predictor.side.table is None \
            or not predictor.trained_with_side:
        return predictor, None
    (hist, device, hour, label, users, pos, ts), _ = _held_out(examples_dir, edge, history_len, eval_fraction)
    view, feats = held_out_features(predictor, examples_dir, edge, history_len, eval_fraction, symmetric)
    best, best_hits = 1.0, -1
    for scale in sorted(SIDE_SCALES, key=lambda a: abs(np.log(a))):  # the features are the same at every scale
        ids = with_side_scale(view, scale).predict(hist, device, hour, k, users=users, at=pos, ts=ts, side=feats)
        hits = int((ids == label[:, None]).any(axis=1).sum())
        if hits > best_hits:
            best, best_hits = scale, hits
    return (predictor if best == 1.0 else with_side_scale(predictor, best)), best


@dataclass
class EdgeCalibration:
    """One predictor on one edge: its calibrator (or None) and test-period reliability before/after."""

    calibrator: Isotonic | None
    raw: Reliability
    calibrated: Reliability


def fit_calibrator(predictor: Predictor, edge: str, examples_dir: Path, history_len: int, eval_fraction: float,
                   k: int, symmetric: bool = False) -> Isotonic | None:
    """The isotonic calibrator of `predictor` on the edge's held-out training slice (None: no slice,
    k = 0, or too few predictions). `symmetric`: the co-occurrence counts were made both ways
    (features.cooc_symmetric)."""
    if k <= 0 or eval_fraction <= 0 or not (examples_dir / f"edge_id={edge}").is_dir():
        return None
    return fit_isotonic(*held_out_pairs(predictor, examples_dir, edge, history_len, eval_fraction, k, symmetric))


def measured(cal: Isotonic | None, p: np.ndarray, hit: np.ndarray) -> EdgeCalibration:
    """The calibrator with its test-period reliability before and after, from (probability, came true)."""
    return EdgeCalibration(cal, Reliability().add(p, hit), Reliability().add(cal(p) if cal else p, hit))


def summarize_calibration(per_edge: dict[str, EdgeCalibration]) -> dict[str, Any]:
    """results.json `policies.<p>.calibration`: ECE and bins (test period) before and after, the calibrator."""
    raw, cal = Reliability(), Reliability()
    for e in per_edge.values():
        raw.merge(e.raw)
        cal.merge(e.calibrated)
    fitted = [e.calibrator for e in per_edge.values() if e.calibrator is not None]
    return {"ece": cal.ece(), "ece_raw": raw.ece(), "bins": cal.rows(), "bins_raw": raw.rows(),
            "calibrator": {"kind": "isotonic" if fitted else "none", "fit_on": FIT_ON,
                           "edges": len(fitted), "examples": sum(c.examples for c in fitted)},
            "measured_on": "test period: top-k predictions vs the same user's next request (strided sample)",
            "per_edge": {e: {"ece": c.calibrated.ece(), "ece_raw": c.raw.ece(),
                             "calibrated": c.calibrator is not None} for e, c in sorted(per_edge.items())}}

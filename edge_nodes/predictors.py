"""Next-content predictors behind one Protocol, looked up by name in a registry.

A predictor maps a batch of user states - the last items watched (oldest first, -1 padded,
the current request included), device index and hour - to each user's top-k next item_idx
(-1 where it has nothing to say). All of them are vectorized over the batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from edge_nodes.errors import PredictorError

TopK = Callable[[Any, Any, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


class Predictor(Protocol):
    """Top-k next items for a batch of user states."""

    name: str

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int item_idx, -1 padded."""
        ...


def first_k_unique(cand: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per row, the first k distinct non-negative candidates not in `exclude` (-1 padded)."""
    bad = cand < 0
    bad |= np.tril(cand[:, :, None] == cand[:, None, :], -1).any(-1)  # later duplicates
    if exclude is not None:
        bad |= (cand[:, :, None] == exclude[:, None, :]).any(-1)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(cand, order, axis=1)
    picked[np.take_along_axis(bad, order, axis=1)] = -1
    if picked.shape[1] < k:
        picked = np.pad(picked, ((0, 0), (0, k - picked.shape[1])), constant_values=-1)
    return picked


class PopularityPredictor:
    """The edge's most popular items before the cut, minus what the user just watched."""

    name = "popularity"

    def __init__(self, scores: np.ndarray) -> None:
        self.ranked = np.argsort(-scores, kind="stable").astype(np.int64)

    @classmethod
    def from_table(cls, path: Path, items: int) -> PopularityPredictor:
        t = _read(path, ("item_idx", "count"))
        scores = np.zeros(items)
        idx = t["item_idx"].to_numpy()
        score_col = "recency_score" if "recency_score" in t.column_names else "count"
        scores[idx[idx < items]] = t[score_col].to_numpy()[idx < items]
        return cls(scores)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int) -> np.ndarray:
        top = self.ranked[:k + hist.shape[1]]
        return first_k_unique(np.broadcast_to(top, (hist.shape[0], top.size)), k, hist)


class MarkovPredictor:
    """The Spark SQL baseline: top-N next items after the user's last item, popularity fill-in."""

    name = "markov_sql"

    def __init__(self, table: np.ndarray, fallback: PopularityPredictor) -> None:
        self.table = table  # (items, N) next item_idx by rank, -1 padded
        self.fallback = fallback

    @classmethod
    def from_table(cls, path: Path, items: int, fallback: PopularityPredictor) -> MarkovPredictor:
        t = _read(path, ("prev_idx", "next_idx", "rank"))
        prev, nxt, rank = (t[c].to_numpy().astype(np.int64) for c in ("prev_idx", "next_idx", "rank"))
        width = int(rank.max()) if rank.size else 1
        table = np.full((items, width), -1, dtype=np.int64)
        ok = (prev >= 0) & (prev < items) & (rank >= 1)
        table[prev[ok], rank[ok] - 1] = nxt[ok]
        return cls(table, fallback)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int) -> np.ndarray:
        last = hist[:, -1]
        rows = np.where((last >= 0)[:, None], self.table[np.maximum(last, 0)], -1)
        pop = self.fallback.predict(hist, device_idx, hour, k)
        return first_k_unique(np.concatenate([rows, pop], axis=1), k, hist[:, -1:])


class ModelPredictor:
    """A trained next-content model (federated, local-only or centralized) via edge_nodes.model."""

    name = "model"

    def __init__(self, params: Any, spec: Any, top_k: TopK, name: str = "model") -> None:
        self.params, self.spec, self._top_k, self.name = params, spec, top_k, name

    @classmethod
    def from_npz(cls, path: Path, name: str = "model") -> ModelPredictor:
        if not path.is_file():
            raise PredictorError(f"model file {path} is missing; run `edgecache train` first")
        model = _model_module()
        params, spec = model.load_params(path)
        return cls(params, spec, model.top_k, name)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int) -> np.ndarray:
        out = np.asarray(self._top_k(self.params, self.spec, hist, device_idx, hour, k), dtype=np.int64)
        return first_k_unique(out, k, hist[:, -1:])


def _model_module() -> Any:
    try:
        return importlib.import_module("edge_nodes.model")
    except ImportError as e:
        raise PredictorError("edge_nodes.model is not available (the federated issue provides it); "
                             "model-backed predictors cannot run without it") from e


def _read(path: Path, columns: tuple[str, ...]) -> Any:
    if not path.exists():
        raise PredictorError(f"feature table {path} is missing; run `edgecache features` first")
    t = pq.read_table(path)
    missing = [c for c in columns if c not in t.column_names]
    if missing:
        raise PredictorError(f"{path} lacks columns {missing}; it has {t.column_names}")
    return t


# Config name -> how to build it from an edge's files: (kind, needs).
PREDICTORS: dict[str, type] = {
    "popularity": PopularityPredictor,
    "markov_sql": MarkovPredictor,
    "model": ModelPredictor,
}

"""The exported `markov_sql` predictor as numpy arrays, for the replay (no Spark needed).

    table = load_markov(run_dir, "edge-00")      # or edge_id=None for the centralized table
    table.predict([12, 7], k=3)                  # -> (2, 3) int32 item_idx, -1 = no prediction
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from spark_features.errors import FeaturesInputError


@dataclass(frozen=True)
class MarkovTable:
    """Top-N next items per previous item; rows of `next`/`prob` are ranked, -1 padded."""
    prev: np.ndarray            # (P,) int32, sorted previous item_idx
    next: np.ndarray            # (P, N) int32
    prob: np.ndarray            # (P, N) float64
    fallback: np.ndarray        # (N,) int32: edge popularity, for unseen previous items
    fallback_prob: np.ndarray   # (N,) float64

    def predict(self, prev_idx: np.ndarray | list[int] | int, k: int) -> np.ndarray:
        """The k most likely next items for each previous item (vectorized lookup)."""
        q = np.atleast_1d(np.asarray(prev_idx, dtype=np.int64))
        pos = np.searchsorted(self.prev, q)
        safe = np.minimum(pos, max(len(self.prev) - 1, 0))
        found = (pos < len(self.prev)) & (self.prev[safe] == q) if len(self.prev) else np.zeros(len(q), bool)
        width = self.next.shape[1] if self.next.ndim == 2 else len(self.fallback)
        k_eff = min(k, width)
        out = np.full((len(q), k), -1, dtype=np.int32)
        out[:, :k_eff] = self.fallback[:k_eff]
        if len(self.prev):
            out[found, :k_eff] = self.next[safe[found], :k_eff]
        return out


def markov_path(run_dir: str | Path, edge_id: str | None) -> Path:
    """Where the markov table of an edge (or, for None, the centralized one) lives."""
    features = Path(run_dir) / "features"
    return features / "centralized" / "markov" if edge_id is None else features / "markov" / f"edge_id={edge_id}"


def load_markov(run_dir: str | Path, edge_id: str | None) -> MarkovTable:
    """Read one edge's markov_sql export into dense numpy arrays."""
    path = markov_path(run_dir, edge_id)
    if not path.exists():
        raise FeaturesInputError(f"{path} is missing; run `edgecache features` on {run_dir} first")
    t = pq.read_table(path, columns=["prev_idx", "next_idx", "rank", "prob"])
    prev = t.column("prev_idx").to_numpy().astype(np.int64)
    nxt = t.column("next_idx").to_numpy().astype(np.int32)
    rank = t.column("rank").to_numpy().astype(np.int64)
    prob = t.column("prob").to_numpy().astype(np.float64)
    n = int(rank.max()) if len(rank) else 0
    keys, row = np.unique(prev, return_inverse=True)
    dense_next = np.full((len(keys), n), -1, dtype=np.int32)
    dense_prob = np.zeros((len(keys), n), dtype=np.float64)
    dense_next[row, rank - 1] = nxt
    dense_prob[row, rank - 1] = prob
    is_fb = keys == -1
    fallback = dense_next[is_fb][0] if is_fb.any() else np.full(n, -1, np.int32)
    fallback_prob = dense_prob[is_fb][0] if is_fb.any() else np.zeros(n)
    return MarkovTable(prev=keys[~is_fb].astype(np.int32), next=dense_next[~is_fb], prob=dense_prob[~is_fb],
                       fallback=fallback, fallback_prob=fallback_prob)

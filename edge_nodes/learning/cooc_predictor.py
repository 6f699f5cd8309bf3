"""`itemcf`: the top co-occurring items of a user's recent history, from the federated counts.

score(j) = sum over the last W history items h (lag 1 = the current request) of
decay^(lag-1) * count[h, j], with the table's own W and decay (models/itemcf.npz). Items
with a score rank first; the edge's popularity fills the rest (an item with neither is not
predicted: -1). The item just requested is
never predicted. Seen items are left out where the edge's own training data says people do
not return: when the share of its training events that re-consume an item the user had seen
(`UserHistory.repeat_share`) is below REPEAT_THRESHOLD, every item in the user's train-period
history (needs `users`; with `at`, also its test requests before the row) and in the history window is excluded; else only the current item.
Learned per edge from its data, not set per trace. Probabilities are the normalized scores
with one pseudo-count of popularity: (score_j + share_j) / (sum of scores + 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_table import ROWS_PER_CHUNK, CoocTable
from edge_nodes.learning.history import UserHistory
from edge_nodes.learning.model import pop_top_k
from edge_nodes.learning.predictors import PopularityPredictor

# Seen items are excluded when fewer than 10% of an edge's training events re-consume: excluding
# them forgoes at most that share of hits and frees every slot they held (MovieLens: 0%, people rate
# a film once; the synthetic default: 49%, binge-watchers return, so it keeps them).
REPEAT_THRESHOLD = 0.10


class CoocPredictor:
    """Federated co-occurrence counts over the recent history, popularity fill-in."""

    name = "itemcf"

    def __init__(self, table: CoocTable | LiveCounts, popularity: np.ndarray, history: UserHistory | None = None,
                 exclude_seen: bool = False) -> None:
        self.table = table
        total = float(np.sum(popularity))
        self.share = np.asarray(popularity, np.float64) / total if total > 0 else np.zeros(table.n_items)
        self.history, self.exclude_seen = history, exclude_seen

    @classmethod
    def from_files(cls, table_path: Path, popularity_path: Path, history_path: Path,
                   items: int) -> CoocPredictor:
        """The summed table, this edge's popularity and its users' histories (the seen rule's data)."""
        return cls.with_history(CoocTable.load(table_path, items),
                                PopularityPredictor.from_table(popularity_path, items).share,
                                UserHistory.from_table(history_path, items))

    @classmethod
    def with_history(cls, table: CoocTable | LiveCounts, popularity: np.ndarray, history: UserHistory) -> CoocPredictor:
        """The seen rule from the edge's data: exclude seen items where re-consumption is rare."""
        return cls(table, popularity, history, history.repeat_share() < REPEAT_THRESHOLD)

    def scores(self, hist: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """(n, items) decay-weighted co-occurrence scores of the last W items of each history (at
        the rows' times `ts` when the counts are refreshed after the cut: LiveCounts)."""
        return self.table.window_scores(hist, ts)

    def excluded(self, hist: np.ndarray, users: np.ndarray | None,
                 at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, items) this edge's seen rule leaves out for each row (`at`: Predictor); may repeat."""
        hist = np.asarray(hist, np.int64)
        cols = hist if self.exclude_seen else hist[:, -1:]
        r, c = np.nonzero(cols >= 0)
        rows, items = [r], [cols[r, c]]
        if self.exclude_seen and users is not None and self.history is not None:
            codes = self.history.codes(users)
            known = self.history.length[np.maximum(codes, 0)] if at is None else np.asarray(at, np.int64)
            seen_rows, seen_items = self.history.seen_pairs(codes, known)
            rows.append(seen_rows)
            items.append(seen_items)
        return np.concatenate(rows), np.concatenate(items)

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return self.predict_scored(hist, device_idx, hour, k, users=users, at=at, ts=ts)[0]

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item_idx (-1 padded) and their probabilities; `users` enables the train-history seen set."""
        hist = np.asarray(hist, np.int64)
        def part(a: np.ndarray | None, i: int) -> np.ndarray | None:
            return None if a is None else a[i:i + ROWS_PER_CHUNK]
        # chunks bound the (rows, items) arrays held at once; their ranking keys share one scratch array
        # (a fresh 6 MB one per chunk is page-faulted in anew whenever the allocator gave it back)
        key = np.empty((min(hist.shape[0], ROWS_PER_CHUNK), self.table.n_items))
        parts = [self._top_k(hist[i:i + ROWS_PER_CHUNK], part(users, i), part(at, i), part(ts, i), k, key)
                 for i in range(0, hist.shape[0], ROWS_PER_CHUNK)]
        if not parts:
            return np.full((0, k), -1, dtype=np.int64), np.zeros((0, k))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _top_k(self, hist: np.ndarray, users: np.ndarray | None, at: np.ndarray | None,
               ts: np.ndarray | None, k: int, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One chunk's top-k; `key`: scratch of at least its rows, overwritten."""
        s = self.scores(hist, ts)
        rows, items = self.excluded(hist, users, at)
        s[rows, items] = 0.0
        total = s.sum(axis=1, keepdims=True)
        # scored items above every fill-in; fill-ins by popularity (share < 1 <= 1 + score). Built as
        # max((s + 1) * (s > 0), share), in place: the same as a where(s > 0, s + 1, share) for the
        # finite scores counts give, in full-speed passes (a masked add or where: 1.7-2.4x slower)
        key = np.add(s, 1.0, out=key[:s.shape[0]])
        key *= s > 0
        np.maximum(key, self.share, out=key)
        key[rows, items] = -np.inf
        kk = min(k, key.shape[1])
        ids, best = pop_top_k(key, kk)  # by key, ties to the smaller item_idx
        probs = (np.take_along_axis(s, ids, axis=1) + self.share[ids]) / (total + 1.0)
        dead = best <= 0  # excluded, or neither scored nor ever viewed
        ids, probs = np.where(dead, -1, ids), np.where(dead, 0.0, probs)
        if kk < k:
            pad = ((0, 0), (0, k - kk))
            ids, probs = np.pad(ids, pad, constant_values=-1), np.pad(probs, pad)
        return ids.astype(np.int64), probs

"""Co-occurrence counts that keep growing after the cut: the analytics round re-run on a schedule.

A deployed federation does not freeze its counts at the training cut. Each edge keeps counting
its users' windows as requests arrive (its own data, the same rule as spark_features/cooc.py),
and every `every` the server sums what the edges counted since (the same one-round federated
analytics as at the cut: counts leave the edge, logs do not). `LiveCounts` is what a request
reads at its time t: the table at the cut plus every pair counted before the start of t's
refresh period, never a pair of that period (its own request included) or a later one.

The test stream's pairs are counted from each request's history window (`EdgeStream.hist`,
oldest first, ending at the request): lags up to min(W, history_len - 1), so with
features.history_len <= W the last lag is not counted.

A pair counted at time p becomes visible at refresh number floor((p - cut) / every) + 1; a row
at time t reads refresh floor((t - cut) / every). Scores are the table's plus, per row, its
window items' visible pairs (a prefix of each item's pairs sorted by visibility), so no table
is rebuilt per refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from edge_nodes.learning.cooc_table import CoocTable, window_pairs


@dataclass(frozen=True)
class LiveCounts:
    """The table at the cut plus the test period's pairs, each visible from its refresh on."""

    table: CoocTable
    cut: np.datetime64
    every: np.timedelta64
    src: np.ndarray      # int64 previous item of each pair, pairs sorted by (src, visible)
    dst: np.ndarray      # int64 next item
    val: np.ndarray      # float64 decay-weighted count
    visible: np.ndarray  # int64 refresh number from which the pair is in the sum (>= 1)

    @classmethod
    def from_events(cls, table: CoocTable, events: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    cut: np.datetime64, every_days: float, symmetric: bool) -> LiveCounts:
        """`events`: per edge, (hist (n, k) ending at each request, item (n,), ts (n,) datetime64)."""
        if every_days <= 0:
            raise ValueError(f"every_days must be > 0, got {every_days}")
        every = np.timedelta64(int(round(every_days * 86400e9)), "ns")
        cut = cut.astype("datetime64[ns]")
        parts = []
        for hist, item, ts in events:
            hist = np.asarray(hist, np.int64)
            r, c, v = window_pairs(hist[:, :-1], item, table.window, table.decay, False)
            when = np.concatenate(_times(hist[:, :-1], item, np.asarray(ts, "datetime64[ns]"), table.window))
            parts.append((r, c, v, when))
            if symmetric:
                parts.append((c, r, v, when))
        src, dst, val, when = (np.concatenate([p[i] for p in parts]) if parts else np.empty(0) for i in range(4))
        visible = (when.astype("datetime64[ns]") - cut) // every + 1 if len(parts) else np.empty(0, np.int64)
        order = np.lexsort((visible, src))
        return cls(table, cut, every, src.astype(np.int64)[order], dst.astype(np.int64)[order],
                   val.astype(np.float64)[order], np.asarray(visible, np.int64)[order])

    @property
    def base(self) -> CoocTable:
        """The counts at the cut: what training examples and held-out views read."""
        return self.table

    @property
    def every_days(self) -> float:
        return float(self.every / np.timedelta64(1, "D"))

    @property
    def n_items(self) -> int:
        return self.table.n_items

    @property
    def window(self) -> int:
        return self.table.window

    @property
    def decay(self) -> float:
        return self.table.decay

    def refresh_of(self, ts: np.ndarray) -> np.ndarray:
        """(n,) the refresh number a row at each time reads (0 = the table at the cut)."""
        return np.maximum((np.asarray(ts, "datetime64[ns]") - self.cut) // self.every, 0).astype(np.int64)

    def without(self, hist: np.ndarray, label: np.ndarray, symmetric: bool = False) -> CoocTable:
        """The cut's table minus these training events (held-out views are in the training period)."""
        return self.table.without(hist, label, symmetric)

    def window_scores(self, hist: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """CoocTable.window_scores at each row's time (`ts` None: at the cut)."""
        out = self.table.window_scores(hist)
        if ts is not None:
            delta = self._delta(hist, ts).tocoo()  # duplicates summed: one entry per (row, item)
            out[delta.row, delta.col] += delta.data
        return out

    def window_scores_sparse(self, hist: np.ndarray, ts: np.ndarray | None = None) -> sparse.csr_matrix:
        base = self.table.window_scores_sparse(hist)
        return base if ts is None else (base + self._delta(hist, ts)).tocsr()

    def _delta(self, hist: np.ndarray, ts: np.ndarray) -> sparse.csr_matrix:
        """(n, n_items): each row's window weights times the pairs visible at its refresh."""
        weights = self.table.window_weights(hist).tocoo()
        n = weights.shape[0]
        if self.src.size == 0 or weights.nnz == 0:
            return sparse.csr_matrix(weights.shape)
        refresh = self.refresh_of(ts)[weights.row]
        span = int(self.visible.max()) + 2
        keys = self.src * span + self.visible  # ascending: pairs are sorted by (src, visible)
        item = weights.col.astype(np.int64)
        start = np.searchsorted(keys, item * span, side="left")
        stop = np.searchsorted(keys, item * span + np.minimum(refresh, span - 1), side="right")
        count = stop - start
        total = int(count.sum())
        if total == 0:
            return sparse.csr_matrix(weights.shape)
        owner = np.repeat(np.arange(count.size), count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        pair = start[owner] + offset
        data = weights.data[owner] * self.val[pair]
        return sparse.csr_matrix((data, (weights.row[owner], self.dst[pair])), shape=(n, self.n_items))


def _times(hist: np.ndarray, item: np.ndarray, ts: np.ndarray, window: int) -> list[np.ndarray]:
    """The time of each pair `window_pairs` makes, in its order: the request's (lag by lag)."""
    out = []
    for lag in range(1, min(window, hist.shape[1]) + 1):
        ok = (hist[:, -lag] >= 0) & (item >= 0)
        out.append(ts[ok])
    return out or [np.empty(0, "datetime64[ns]")]

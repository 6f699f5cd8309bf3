"""Co-occurrence counts that keep growing after the cut: the analytics round re-run on a schedule.

A deployed federation does not freeze its counts at the training cut. Each edge keeps counting
its users' windows as requests arrive (its own data, the same rule as spark_features/cooc.py),
and every `every` the server sums what the edges counted since (the same one-round federated
analytics as at the cut: counts leave the edge, logs do not). `LiveCounts` is what a request
reads at its time t: the table at the cut plus every pair counted before the start of t's
refresh period, never a pair of that period (its own request included) or a later one.

Aged counts (the table's half_life_days > 0) are re-aged at every refresh, as the server would:
each test-period pair is stored at its weight relative to the table's reference time (ref_s, the
cut; above 1 for pairs after it), and a row's scores are multiplied by the age of its refresh's
start, so every count in the sum weighs 2^-((refresh start - its time) / half-life).

The test stream's pairs are counted from each request's history window (`EdgeStream.hist`,
oldest first, ending at the request): lags up to min(W, history_len - 1), so with
features.history_len <= W the last lag is not counted.

A pair counted at time p becomes visible at refresh number floor((p - cut) / every) + 1; a row
at time t reads refresh floor((t - cut) / every). Rows of a refresh that fills much of a call
(BLOCK_ROWS) are one product with the cut's table plus that refresh's pairs (built once, a few
kept); the other rows add their window items' visible pairs directly (a prefix of each item's
pairs sorted by refresh), so a trace of many short refresh periods builds no table per period.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

from edge_nodes.learning.cooc_table import CoocTable, dense, window_pairs

BLOCK_ROWS = 256  # rows of one refresh in a call from which one sparse product beats expanding pairs
DENSE_BLOCK_ROWS = 16  # ... and with a dense table (a small catalog: each summed table built once, kept)
BLOCKS_KEPT = 8  # summed tables kept (calls mostly come in time order) ...
SUM_DENSE_CELLS = 2**23  # summed_csr: a dense (rows x items) float64 scratch up to 64 MB
KEPT_BYTES = 512 * 2**20  # ... within this many bytes (a dense one is n_items² float64: 72 MB at 3,000)


@dataclass(frozen=True)
class LiveCounts:
    """The table at the cut plus the test period's pairs, each visible from its refresh on."""

    table: CoocTable
    cut: np.datetime64
    every: np.timedelta64
    src: np.ndarray      # int64 previous item, sorted by (src, visible, dst), one entry per triple
    dst: np.ndarray      # int64 next item
    val: np.ndarray      # float64 decay-weighted count summed over the refresh period
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
            ts = np.asarray(ts, "datetime64[ns]")
            r, c, v = window_pairs(hist[:, :-1], item, table.window, table.decay, False, table.aged(_seconds(ts)))
            when = np.concatenate(_times(hist[:, :-1], item, ts, table.window))
            parts.append((r, c, v, when))
            if symmetric:
                parts.append((c, r, v, when))
        src, dst, val, when = (np.concatenate([p[i] for p in parts]) if parts else np.empty(0) for i in range(4))
        visible = (when.astype("datetime64[ns]") - cut) // every + 1 if len(parts) else np.empty(0, np.int64)
        # one entry per (src, refresh, dst), sorted so: what a row expands is what differs, not every event
        src, dst, visible = src.astype(np.int64), dst.astype(np.int64), np.asarray(visible, np.int64)
        span = int(visible.max()) + 1 if visible.size else 1
        keys, inv = np.unique((src * span + visible) * table.n_items + dst, return_inverse=True)
        sums = np.bincount(inv, weights=val.astype(np.float64), minlength=keys.size)
        return cls(table, cut, every, keys // table.n_items // span, keys % table.n_items, sums,
                   keys // table.n_items % span)

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

    def without(self, hist: np.ndarray, label: np.ndarray, symmetric: bool = False,
                ts_s: np.ndarray | None = None) -> CoocTable:
        """The cut's table minus these training events (held-out views are in the training period)."""
        return self.table.without(hist, label, symmetric, ts_s)

    def _age(self, refresh: np.ndarray) -> np.ndarray | None:
        """(n,) what the counts stored at the table's reference weigh at the start of each row's
        refresh period (aged tables; None for plain counts)."""
        if self.table.half_life_days <= 0:
            return None
        start = self.cut + refresh * self.every
        return 1.0 / self.table.aged(_seconds(start))

    def window_scores(self, hist: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """CoocTable.window_scores at each row's time (`ts` None: at the cut)."""
        if ts is None:
            return self.table.window_scores(hist)
        refresh, big = self._split(ts, DENSE_BLOCK_ROWS if isinstance(self.table.dense_matrix, np.ndarray)
                                   else BLOCK_ROWS)
        weights = self.table.window_weights(hist)
        blocks = np.unique(refresh[big]).tolist()
        if len(blocks) == 1 and big.all():  # the whole call reads one refresh (calls come in time order)
            out = dense(weights @ self._summed(blocks[0], dense=True))
        else:
            out = np.empty((refresh.size, self.n_items)) if big.all() else self.table.window_scores(hist)
            rest = np.flatnonzero(~big)
            if rest.size:
                delta = self._expand(hist[rest], refresh[rest]).tocoo()
                out[rest[delta.row], delta.col] += delta.data
            for b in blocks:
                at = np.flatnonzero(refresh == b)
                out[at] = dense(weights[at] @ self._summed(b, dense=True))
        age = self._age(refresh)
        if age is not None:
            out *= age[:, None]
        return out

    def window_scores_sparse(self, hist: np.ndarray, ts: np.ndarray | None = None) -> sparse.csr_matrix:
        if ts is None:
            return self.table.window_scores_sparse(hist)
        refresh, big = self._split(ts)
        small = np.flatnonzero(~big)
        rows, cols, vals = [], [], []
        if small.size:  # the cut's table, plus the pairs each row's refresh added, expanded
            base = self.table.window_scores_sparse(hist[small]).tocoo()
            r, c, v = self._expand_coo(hist[small], refresh[small])
            rows += [small[base.row], small[r]]
            cols += [base.col, c]
            vals += [base.data, v]
        weights = self.table.window_weights(hist)
        for b in np.unique(refresh[big]).tolist():
            at = np.flatnonzero(refresh == b)
            part = (weights[at] @ self._summed(b, dense=False)).tocoo()
            rows.append(at[part.row])
            cols.append(part.col)
            vals.append(part.data)
        age = self._age(refresh)
        rows_all = np.concatenate(rows) if rows else np.empty(0, np.int64)
        vals_all = np.concatenate(vals) if rows else np.empty(0)
        if age is not None:
            vals_all = vals_all * age[rows_all]
        return summed_csr(rows_all, np.concatenate(cols) if rows else np.empty(0, np.int64), vals_all,
                          (hist.shape[0], self.n_items))

    def _split(self, ts: np.ndarray, min_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
        """Each row's refresh, and which rows are scored by one product with their refresh's table:
        refreshes after the cut with at least `min_rows` rows in the call (the rest expand pairs)."""
        refresh = self.refresh_of(ts)
        ids, inv, counts = np.unique(refresh, return_inverse=True, return_counts=True)
        return refresh, ((counts >= min_rows) & (ids > 0))[inv.ravel()]

    def _summed(self, refresh: int, dense: bool) -> np.ndarray | sparse.csr_matrix:
        """The cut's table plus the pairs visible at `refresh` (the last few kept); dense where the
        cut's table is (CoocTable's rule)."""
        key = (refresh, dense and isinstance(self.table.dense_matrix, np.ndarray))
        cache = self._cache
        if key not in cache:
            one = self.n_items ** 2 * 8 if key[1] else max(1, self.table.counts.size + self.src.size) * 12
            while cache and len(cache) >= max(1, min(BLOCKS_KEPT, KEPT_BYTES // one)):
                cache.pop(next(iter(cache)))
            if key[1]:  # from the latest kept earlier dense table, adding only the refreshes since
                since = max((r for r, d in cache if d and r < refresh), default=0)
                table = cache[(since, True)].copy() if since else np.array(self.table.dense_matrix, copy=True)
                keep = (self.visible > since) & (self.visible <= refresh)
                np.add.at(table, (self.src[keep], self.dst[keep]), self.val[keep])
                cache[key] = table
            else:
                keep = self.visible <= refresh
                delta = sparse.csr_matrix((self.val[keep], (self.src[keep], self.dst[keep])),
                                          shape=(self.n_items, self.n_items))
                cache[key] = (self.table.csr + delta).tocsr()
        return cache[key]

    @cached_property
    def _keys(self) -> tuple[int, np.ndarray]:
        """(span, src * span + visible): ascending, as the entries are sorted by (src, visible)."""
        span = int(self.visible.max()) + 2 if self.visible.size else 2
        return span, self.src * span + self.visible

    @cached_property
    def _cache(self) -> dict[tuple[int, bool], np.ndarray | sparse.csr_matrix]:
        return {}

    def _expand(self, hist: np.ndarray, refresh_of_row: np.ndarray) -> sparse.csr_matrix:
        """(n, n_items): each row's window weights times the pairs visible at its refresh, through
        the pair lists (refresh 0 rows add nothing)."""
        r, c, v = self._expand_coo(hist, refresh_of_row)
        return summed_csr(r, c, v, (hist.shape[0], self.n_items))

    def _expand_coo(self, hist: np.ndarray, refresh_of_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_expand` as (row, col, value) triplets, a (row, col) possibly repeated."""
        weights = self.table.window_weights(hist).tocoo()
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        if self.src.size == 0 or weights.nnz == 0:
            return empty
        refresh = refresh_of_row[weights.row]
        span, keys = self._keys
        item = weights.col.astype(np.int64)
        start = np.searchsorted(keys, item * span, side="left")
        stop = np.searchsorted(keys, item * span + np.minimum(refresh, span - 1), side="right")
        count = stop - start
        total = int(count.sum())
        if total == 0:
            return empty
        owner = np.repeat(np.arange(count.size), count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        pair = start[owner] + offset
        return weights.row[owner].astype(np.int64), self.dst[pair], weights.data[owner] * self.val[pair]


def summed_csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """Triplets with repeats summed into a CSR matrix (indices sorted). Up to SUM_DENSE_CELLS cells
    a dense bincount does it (row-major order is CSR order: no per-row sort); larger calls take
    scipy's COO -> CSR, which sorts each row (a dense scratch per block of rows was slower there:
    MovieLens replay 88 -> 98 s, most of those cells being empty)."""
    n, m = shape
    if n * m > SUM_DENSE_CELLS:
        return sparse.csr_matrix((vals, (rows, cols)), shape=shape)
    dense = np.bincount(rows * m + cols, weights=vals, minlength=n * m)
    flat = np.flatnonzero(dense)
    indptr = np.r_[0, np.cumsum(np.bincount(flat // m, minlength=n))].astype(np.int64)
    return sparse.csr_matrix((dense[flat], (flat % m).astype(np.int32), indptr), shape=shape)


def _seconds(ts: np.ndarray) -> np.ndarray:
    """datetime64 -> float Unix seconds."""
    return np.asarray(ts, "datetime64[ns]").astype(np.int64) / 1e9


def _times(hist: np.ndarray, item: np.ndarray, ts: np.ndarray, window: int) -> list[np.ndarray]:
    """The time of each pair `window_pairs` makes, in its order: the request's (lag by lag)."""
    out = []
    for lag in range(1, min(window, hist.shape[1]) + 1):
        ok = (hist[:, -lag] >= 0) & (item >= 0)
        out.append(ts[ok])
    return out or [np.empty(0, "datetime64[ns]")]

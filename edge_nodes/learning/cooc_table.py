"""The summed co-occurrence table `models/itemcf.npz`: what the server writes and `itemcf` reads.

File contract (docs/internals.md; a model kind may read it as an input): CSR over prev_idx ->
next_idx - `indptr` int64 (n_items + 1), `indices` int32 (next_idx, ascending within a row),
`counts` float32 (the decay-weighted counts summed over every edge) - plus scalars `n_items`,
`window`, `decay` (how the edges counted, so the file alone predicts) and `edges` (how many
edges' counts are in it), and, when the counts are aged (features.cooc_half_life_days > 0),
`half_life_days` and `ref_s`: a pair counted at time t weighs 2^-((ref_s - t) / half-life), ref_s
being the cut in Unix seconds (files without them hold plain counts). Loaded with `allow_pickle=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import sparse

from edge_nodes.errors import ModelFileError

COO = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, cols, counts
ITEMCF_FILE = "itemcf.npz"  # in the run's models/: the server writes it, itemcf and the models' side features read it
ROWS_PER_CHUNK = 256  # rows scored at once: bounds the dense (rows, n_items) working set
DENSE_MAX_BYTES = 128 * 2**20  # window_scores keeps the table dense up to this (4,096 items in float64)
KEYS = ("indptr", "indices", "counts", "n_items", "window", "decay", "edges")
AGE_KEYS = ("half_life_days", "ref_s")  # optional: plain counts without them
DAY_S = 86400.0


def age_weight(ts_s: np.ndarray | float, ref_s: float, half_life_days: float) -> np.ndarray:
    """2^-((ref_s - ts_s) / half-life): what a pair counted at ts_s (Unix seconds) weighs at ref_s;
    1 everywhere when half_life_days is 0 (plain counts)."""
    ts = np.asarray(ts_s, np.float64)
    if half_life_days <= 0:
        return np.ones(ts.shape)
    return np.exp2(-(ref_s - ts) / (half_life_days * DAY_S))


def local_table_path(model_path: Path) -> Path:
    """Where a model trained on one edge's own counts (local_only) keeps them: beside its file."""
    return model_path.with_name(model_path.stem + ".itemcf.npz")


@dataclass(frozen=True)
class CoocTable:
    """Item -> item co-occurrence counts in CSR form."""

    indptr: np.ndarray
    indices: np.ndarray
    counts: np.ndarray
    n_items: int
    window: int
    decay: float
    edges: int
    half_life_days: float = 0.0  # > 0: counts aged to ref_s (age_weight); 0: plain counts
    ref_s: int = 0

    @classmethod
    def from_coo(cls, parts: Sequence[COO], n_items: int, window: int, decay: float,
                 half_life_days: float = 0.0, ref_s: int = 0) -> CoocTable:
        """Sum COO parts (one per edge, summed in the given order) into one CSR table; the parts
        were aged as `half_life_days` and `ref_s` say (the edges' rule, stored with the table)."""
        rows = np.concatenate([np.asarray(p[0], np.int64) for p in parts]) if parts else np.empty(0, np.int64)
        cols = np.concatenate([np.asarray(p[1], np.int64) for p in parts]) if parts else np.empty(0, np.int64)
        vals = np.concatenate([np.asarray(p[2], np.float64) for p in parts]) if parts else np.empty(0)
        keys, inv = np.unique(rows * n_items + cols, return_inverse=True)
        sums = np.bincount(inv, weights=vals, minlength=keys.size)
        indptr = np.r_[0, np.cumsum(np.bincount(keys // n_items, minlength=n_items))].astype(np.int64)
        return cls(indptr, (keys % n_items).astype(np.int32), sums.astype(np.float32), int(n_items),
                   int(window), float(decay), len(parts), float(half_life_days), int(ref_s))

    def aged(self, ts_s: np.ndarray | float) -> np.ndarray:
        """What a pair counted at `ts_s` (Unix seconds) weighs in this table (1 for plain counts)."""
        return age_weight(ts_s, self.ref_s, self.half_life_days)

    def without(self, hist: np.ndarray, label: np.ndarray, symmetric: bool = False,
                ts_s: np.ndarray | None = None) -> CoocTable:
        """The table minus what training events (`label` after the window `hist`, oldest first,
        -1 padded; at `ts_s`, Unix seconds, which aged counts need) added to it (`window_pairs`).
        Exact when k >= window (a lag past the window was counted by no one); counts are clipped
        at 0 against float32 rounding. For fitting on a slice the table also counted."""
        if self.half_life_days > 0 and ts_s is None:
            raise ValueError("an aged co-occurrence table needs the removed events' times (ts_s)")
        weight = None if ts_s is None else self.aged(ts_s)
        r, c, v = window_pairs(hist, label, self.window, self.decay, symmetric, weight)
        t = CoocTable.from_coo([(np.r_[self._rows, r], np.r_[self.indices.astype(np.int64), c],
                                 np.r_[self.counts.astype(np.float64), -v])], self.n_items, self.window, self.decay)
        keep = t.counts > 1e-4  # what is left of a count made only by the removed events is rounding
        indptr = np.r_[0, np.cumsum(np.bincount(t._rows[keep], minlength=self.n_items))].astype(np.int64)
        return CoocTable(indptr, t.indices[keep], t.counts[keep], self.n_items, self.window, self.decay, self.edges,
                         self.half_life_days, self.ref_s)

    def window_scores(self, hist: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """(n, n_items) float64: sum over the last min(window, k) items h of each history (oldest
        first, -1 padded) of decay^(lag-1) * count[h, j] (lag 1 = the newest).

        One sparse product: a (n, n_items) matrix holding each row's lag weights at its history
        items, times the table (dense when it fits DENSE_MAX_BYTES, else sparse); row chunks bound
        the dense output's working set. `ts` (the rows' times) is read by `LiveCounts`; a table
        frozen at the cut reads the same at every time."""
        weights = self.window_weights(hist)
        table = self.dense_matrix
        if weights.shape[0] <= ROWS_PER_CHUNK:  # one chunk (the predictors' calls): its product is the output, not copied
            return dense(weights @ table)
        out = np.empty(weights.shape)
        for s in range(0, weights.shape[0], ROWS_PER_CHUNK):
            out[s:s + ROWS_PER_CHUNK] = dense(weights[s:s + ROWS_PER_CHUNK] @ table)
        return out

    def window_scores_sparse(self, hist: np.ndarray, ts: np.ndarray | None = None) -> sparse.csr_matrix:
        """`window_scores` as a CSR matrix of its nonzero entries (a few % of the catalog per row)."""
        return (self.window_weights(hist) @ self.csr).tocsr()

    def window_weights(self, hist: np.ndarray) -> sparse.csr_matrix:
        """(n, n_items): each row's lag weights decay^(lag-1) at its last min(window, k) items."""
        hist = np.asarray(hist, np.int64)
        w = min(self.window, hist.shape[1])
        recent = hist[:, hist.shape[1] - w:]
        lag_w = self.decay ** np.arange(w - 1, -1, -1, dtype=np.float64)  # oldest .. newest (weight 1)
        r, c = np.nonzero(recent >= 0)
        return sparse.csr_matrix((lag_w[c], (r, recent[r, c])), shape=(hist.shape[0], self.n_items))

    @property
    def base(self) -> CoocTable:
        """The counts at the cut (for `LiveCounts`, its base): what training and held-out views read."""
        return self

    @cached_property
    def csr(self) -> sparse.csr_matrix:
        return sparse.csr_matrix((self.counts.astype(np.float64), self.indices, self.indptr),
                                 shape=(self.n_items, self.n_items))

    @cached_property
    def csc(self) -> sparse.csc_matrix:
        """The table by columns (training's side features take a batch's candidate columns)."""
        return self.csr.tocsc()

    @cached_property
    def dense_matrix(self) -> np.ndarray | sparse.csr_matrix:
        """The table as a float64 matrix for window_scores: dense up to DENSE_MAX_BYTES (a sparse
        row-times-dense product is a few axpys per row, 2-5x faster than sparse-sparse), else CSR."""
        return self.csr.toarray() if self.n_items ** 2 * 8 <= DENSE_MAX_BYTES else self.csr

    @cached_property
    def _rows(self) -> np.ndarray:
        """The row (prev_idx) of every stored count."""
        return np.repeat(np.arange(self.n_items, dtype=np.int64), np.diff(self.indptr))

    @cached_property
    def _keys(self) -> np.ndarray:
        """row * n_items + col of every stored count: ascending (CSR order), for lookups."""
        return self._rows * self.n_items + self.indices

    def lookup(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """count[rows, cols] (broadcast; 0 where absent or either index is -1), float64."""
        rows, cols = np.broadcast_arrays(np.asarray(rows, np.int64), np.asarray(cols, np.int64))
        if self._keys.size == 0:
            return np.zeros(rows.shape)
        keys = (rows * self.n_items + cols).ravel()
        # searched in ascending order: numpy narrows each search from the previous one, and the
        # table's keys are read in order rather than at random (a training batch: 2.5 -> 0.7 ms)
        order = np.argsort(keys)
        at = np.empty(keys.size, np.int64)
        at[order] = np.searchsorted(self._keys, keys[order])
        at = np.minimum(at, self._keys.size - 1).reshape(rows.shape)
        keys = keys.reshape(rows.shape)
        found = (rows >= 0) & (cols >= 0) & (self._keys[at] == keys)
        return np.where(found, self.counts[at].astype(np.float64), 0.0)

    def to_dense(self) -> np.ndarray:
        """(n_items, n_items) float64 counts (tests and small catalogs only)."""
        out = np.zeros((self.n_items, self.n_items))
        rows = np.repeat(np.arange(self.n_items), np.diff(self.indptr))
        out[rows, self.indices] = self.counts
        return out

    def save(self, path: Path) -> None:
        """Write the .npz (parent folders created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, indptr=self.indptr, indices=self.indices, counts=self.counts,
                 n_items=np.int64(self.n_items), window=np.int64(self.window), decay=np.float64(self.decay),
                 edges=np.int64(self.edges), half_life_days=np.float64(self.half_life_days), ref_s=np.int64(self.ref_s))

    @classmethod
    def load(cls, path: Path, n_items: int | None = None) -> CoocTable:
        """Read and check a table; `n_items` (the catalog's) must match when given."""
        if not path.is_file():
            raise ModelFileError(f"co-occurrence table {path} is missing; run `edgecache train` "
                                 "(its analytics round writes it)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in KEYS if k not in z.files]
                if missing:
                    raise ModelFileError(f"{path} is not an itemcf table: it lacks {missing}")
                aged = all(k in z.files for k in AGE_KEYS)
                if not aged and any(k in z.files for k in AGE_KEYS):
                    raise ModelFileError(f"{path} holds aged counts without both {AGE_KEYS}; rerun "
                                         "`edgecache train` (its analytics round writes them together)")
                t = cls(z["indptr"].astype(np.int64), z["indices"].astype(np.int32), z["counts"].astype(np.float32),
                        int(z["n_items"]), int(z["window"]), float(z["decay"]), int(z["edges"]),
                        float(z["half_life_days"]) if aged else 0.0, int(z["ref_s"]) if aged else 0)
        except (ValueError, OSError, EOFError) as e:  # not an .npz at all, truncated, or holding pickles
            raise ModelFileError(f"{path} is not a readable itemcf table ({e}); rerun `edgecache train` "
                                 "(its analytics round writes it)") from e
        if t.indptr.size != t.n_items + 1 or t.indptr[-1] != t.indices.size or t.indices.size != t.counts.size:
            raise ModelFileError(f"{path}: CSR arrays disagree (indptr {t.indptr.size}, indices "
                                 f"{t.indices.size}, counts {t.counts.size}, n_items {t.n_items})")
        if n_items is not None and t.n_items != n_items:
            raise ModelFileError(f"{path} counts {t.n_items} items but the catalog has {n_items}; "
                                 "it belongs to another run: rerun `edgecache train`")
        return t


def dense(product: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """A sparse-times-table product as an ndarray (it is one already when the table is dense)."""
    return product if isinstance(product, np.ndarray) else product.toarray()


def window_pairs(hist: np.ndarray, label: np.ndarray, window: int, decay: float, symmetric: bool,
                 weight: np.ndarray | None = None) -> COO:
    """What events (`label` after the window `hist`, oldest first, -1 padded) add to a table: each
    of the last min(window, k) items h at lag l counts decay^(l-1) for (h, label), and for
    (label, h) too when the edges count symmetrically (spark_features/cooc.py); times the event's
    `weight` (n,) when given (its age in an aged table)."""
    hist, label = np.asarray(hist, np.int64), np.asarray(label, np.int64)
    weight = None if weight is None else np.broadcast_to(np.asarray(weight, np.float64), label.shape)
    rows, cols, vals = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0)]
    for lag in range(1, min(window, hist.shape[1]) + 1):
        prev = hist[:, -lag]
        ok = (prev >= 0) & (label >= 0)
        for r, c in [(prev[ok], label[ok])] + ([(label[ok], prev[ok])] if symmetric else []):
            rows.append(r)
            cols.append(c)
            vals.append(decay ** (lag - 1) * (np.ones(r.size) if weight is None else weight[ok]))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

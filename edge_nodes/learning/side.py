"""What an edge knows of a row beyond its history window, as per-candidate features the model weighs.

Two signals, both the edge's own or the federation's aggregate, never another edge's logs:

- **seen**: the candidate is in the user's whole history at this edge before the row (the
  `features/history` table, `UserHistory`) or in the row's history window. How much that
  counts is learned (`side_w[0]`): people who never re-rate learn a large negative weight, a
  binge-watching audience a positive one. No hard-coded mask.
- **co-occurrence**: the itemcf score of the candidate (decay-weighted counts over the last
  min(W, k) items of the window, `CoocTable.window_scores`) from the summed federated table
  (`models/itemcf.npz`), entering as log1p(score) and [score > 0] (`side_w[1:]`).

During training the table already holds the row's own event (it counts the whole training
period), so a row's own contribution to its label's score is taken out (`own_share`): the model
must learn how far counts of *other* events predict, as they do in the test period. Rows and
history both identify a user by id; `pos` is the row's position in the user's history (the
example's `user_pos`; for a live request, the end of the known history).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import sparse

from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_table import CoocTable
from edge_nodes.learning.history import UserHistory

N_SIDE = 3  # features per candidate: seen, log1p(co-occurrence score), co-occurrence score > 0


@dataclass(frozen=True)
class SparseSide:
    """A batch's side features for scoring, as what is nonzero: the seen (row, item) pairs (may
    repeat) and the co-occurrence window scores as CSR (a few % of the catalog per row)."""

    seen_rows: np.ndarray
    seen_items: np.ndarray
    cooc: sparse.csr_matrix | None

    def rows(self, idx: np.ndarray, n: int) -> SparseSide:
        """The features of rows `idx` (distinct, of the n rows), renumbered 0..len(idx)-1."""
        idx = np.asarray(idx, np.int64)
        new = np.full(n, -1, dtype=np.int64)
        new[idx] = np.arange(idx.size)
        keep = new[self.seen_rows] >= 0
        return SparseSide(new[self.seen_rows[keep]], self.seen_items[keep],
                          None if self.cooc is None else self.cooc[idx])

    def blocks(self, bounds: list[tuple[int, int]]) -> list[SparseSide]:
        """The features of each contiguous row range [start, stop) in `bounds` (ascending, covering
        the rows), renumbered from 0: one sort of the seen pairs for every range, and the CSR's
        ranges as views of its arrays (scipy's row slicing copies them, 3x the time). The same
        bounds give the same blocks again (the lockstep's models score one batch's features in
        the same blocks), so what `add_side_sparse` derives from a block is derived once."""
        if len(bounds) == 1 and bounds[0][0] == 0:
            return [self]  # every row (the replay's batches): nothing to slice
        memo: dict[tuple[tuple[int, int], ...], list[SparseSide]] = self.__dict__.setdefault("_blocks", {})
        if tuple(bounds) in memo:
            return memo[tuple(bounds)]
        order = np.argsort(self.seen_rows, kind="stable")
        rows, items = self.seen_rows[order], self.seen_items[order]
        out = []
        for start, stop in bounds:
            lo, hi = np.searchsorted(rows, [start, stop])
            out.append(SparseSide(rows[lo:hi] - start, items[lo:hi], _row_range(self.cooc, start, stop)))
        memo[tuple(bounds)] = out
        return out

    def seen_at(self, width: int) -> np.ndarray:
        """The seen pairs as flat indices of a C-ordered (rows, width) score array, kept per width."""
        memo: dict[int, np.ndarray] = self.__dict__.setdefault("_seen_at", {})
        if width not in memo:
            memo[width] = self.seen_rows * width + self.seen_items
        return memo[width]

    @cached_property
    def cooc_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat index, log1p of the score, score > 0) of every stored co-occurrence entry, float32:
        what each model scoring these rows weighs with its own side_w."""
        assert self.cooc is not None
        csr = self.cooc
        data = csr.data.astype(np.float32)
        rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        return rows * csr.shape[1] + csr.indices, np.log1p(np.maximum(data, 0)), data > 0


def _row_range(csr: sparse.csr_matrix | None, start: int, stop: int) -> sparse.csr_matrix | None:
    """Rows [start, stop) of a CSR matrix, sharing its data and indices."""
    if csr is None:
        return None
    lo, hi = csr.indptr[start], csr.indptr[stop]
    return sparse.csr_matrix((csr.data[lo:hi], csr.indices[lo:hi], csr.indptr[start:stop + 1] - lo),
                             shape=(stop - start, csr.shape[1]), copy=False)


@dataclass(frozen=True)
class SideInfo:
    """The edge's users' histories and the co-occurrence table; either may be absent (feature = 0)."""

    history: UserHistory | None = None
    table: CoocTable | LiveCounts | None = None  # LiveCounts: inference only (training reads the cut's)

    @classmethod
    def from_files(cls, history_path: Path | None, table_path: Path | None, n_items: int) -> SideInfo:
        """Read what exists: a missing file leaves its signal at zero (older runs, tests)."""
        history = (UserHistory.from_table(history_path, n_items)
                   if history_path is not None and history_path.exists() else None)
        table = CoocTable.load(table_path, n_items) if table_path is not None and table_path.is_file() else None
        return cls(history, table)

    def dense(self, hist: np.ndarray, users: np.ndarray | None, pos: np.ndarray | None,
              label: np.ndarray | None = None, n_items: int | None = None,
              ts_s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(seen, cooc): two (n, n_items) float32 arrays for the rows; `label` = training rows (own
        out; at `ts_s`, Unix seconds, which an aged table needs to know what the row added).

        `pos` None = each user's whole known history (a live request after the training period).
        """
        hist = np.asarray(hist, np.int64)
        n = hist.shape[0]
        items = n_items or (self.table.n_items if self.table is not None
                            else self.history.n_items if self.history is not None else 0)
        seen = np.zeros((n, items), dtype=np.float32)
        r, c = np.nonzero(hist >= 0)
        seen[r, hist[r, c]] = 1.0
        if self.history is not None and users is not None:
            codes = self.history.codes(users)
            at = self.history.length[np.maximum(codes, 0)] if pos is None else np.asarray(pos, np.int64)
            rows, seen_items = self.history.seen_pairs(codes, at)
            seen[rows, seen_items] = 1.0
        if self.table is None:
            return seen, np.zeros((n, items), dtype=np.float32)
        cooc = self.table.window_scores(hist).astype(np.float32)
        if label is not None:
            lab = np.asarray(label, np.int64)
            rows = np.arange(n)
            cooc[rows, lab] = _own_out(cooc[rows, lab], own_share(hist, self.table.base, ts_s))
        return seen, cooc


    def sparse(self, hist: np.ndarray, users: np.ndarray | None, pos: np.ndarray | None,
               ts: np.ndarray | None = None) -> SparseSide:
        """`dense`'s features of inference rows (no label), as index pairs and CSR: scoring adds
        them where they are nonzero (`add_side_sparse`), not over (n, n_items) arrays. `ts`: the
        rows' times, for counts refreshed after the cut (LiveCounts)."""
        hist = np.asarray(hist, np.int64)
        r, c = np.nonzero(hist >= 0)
        rows, items = [r], [hist[r, c]]
        if self.history is not None and users is not None:
            codes = self.history.codes(users)
            at = self.history.length[np.maximum(codes, 0)] if pos is None else np.asarray(pos, np.int64)
            seen_rows, seen_items = self.history.seen_pairs(codes, at)
            rows.append(seen_rows)
            items.append(seen_items)
        cooc = self.table.window_scores_sparse(hist, ts) if self.table is not None else None
        return SparseSide(np.concatenate(rows), np.concatenate(items), cooc)


def at_columns(side: SideInfo, hist: np.ndarray, users: np.ndarray | None, pos: np.ndarray | None,
               label: np.ndarray, cols: np.ndarray, n_items: int,
               ts_s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training rows' features of their labels (n, N_SIDE) and of the candidates `cols` (n, C, N_SIDE),
    own event left out: what `dense` + `features_at` give, without the (n, n_items) arrays.

    Only the C candidate columns of the table are gathered (the negatives: ~1/6 of the catalog
    at 512 of 3000), and the labels' counts are looked up in the CSR directly.
    """
    hist, label, cols = (np.asarray(a, np.int64) for a in (hist, label, cols))
    n, k = hist.shape
    slot = np.full(n_items + 1, -1, dtype=np.int64)  # item -> its column among cols; -1 (padding) -> -1
    slot[cols[::-1]] = np.arange(cols.size)[::-1]  # a repeated column (padding slots) maps to its first
    cand = np.zeros((n, cols.size, N_SIDE), dtype=np.float32)  # written in place: seen, log1p(c), c > 0
    seen_c = cand[..., 0]
    seen_t = (hist == label[:, None]).any(axis=1).astype(np.float32)
    r, c = np.nonzero(hist >= 0)
    _mark(seen_c, r, slot[hist[r, c]])
    if side.history is not None and users is not None:
        h = side.history
        codes = h.codes(users)
        at = h.length[np.maximum(codes, 0)] if pos is None else np.asarray(pos, np.int64)
        # each distinct user's history once (a batch holds many rows of the same heavy users), then
        # per row: the candidate was first seen before the row's position
        users_u, row_user = np.unique(codes, return_inverse=True)
        u, items, first = h.first_seen(users_u)
        slots = slot[items]
        ok = slots >= 0
        first_c = np.full((users_u.size, cols.size), np.iinfo(np.int32).max, dtype=np.int32)
        first_c[u[ok], slots[ok]] = first[ok]
        seen_c[first_c[row_user] < at[:, None]] = 1.0
        seen_t = np.maximum(seen_t, h.seen_before(codes, at, label[:, None])[:, 0])
    cooc_t = np.zeros(n, dtype=np.float32)
    if side.table is not None:
        t = side.table.base
        w = min(t.window, k)
        recent = hist[:, k - w:]
        lag_w = t.decay ** np.arange(w - 1, -1, -1, dtype=np.float64)  # oldest .. newest (weight 1)
        # the rows' lag weights times the table's candidate columns, one sparse product in float64;
        # its few nonzeros (~5% of the candidates) go straight into the features, never densified
        prod = (t.window_weights(hist) @ t.csc[:, cols]).tocsr()
        rows = np.repeat(np.arange(n), np.diff(prod.indptr))
        keep = slot[cols[prod.indices]] == prod.indices  # a repeated column counts at its first slot only
        score = prod.data[keep].astype(np.float32)
        at_rc = (rows[keep], prod.indices[keep])
        cand[..., 1][at_rc] = np.log1p(score)
        cand[..., 2][at_rc] = score > 0
        cooc_t = _own_out((t.lookup(recent, label[:, None]) * lag_w).sum(axis=1), own_share(hist, t, ts_s))
    mine = slot[label]  # a candidate that is the row's own label gets the label's (own-out) values
    hit = np.flatnonzero(mine >= 0)
    true = _stack(seen_t, cooc_t)
    cand[hit, mine[hit]] = true[hit]
    return true, cand


def _own_out(score: np.ndarray, own: np.ndarray) -> np.ndarray:
    """score - own, float32; what rounding leaves of a count made only by the row itself is 0."""
    left = np.asarray(score, np.float64) - own
    return np.where(left > 1e-4, left, 0.0).astype(np.float32)


def _mark(seen: np.ndarray, rows: np.ndarray, slots: np.ndarray) -> None:
    ok = slots >= 0
    seen[rows[ok], slots[ok]] = 1.0


def _stack(seen: np.ndarray, cooc: np.ndarray) -> np.ndarray:
    """(..., N_SIDE) float32: seen, log1p(cooc), cooc > 0, written into one array (no temporaries)."""
    out = np.empty(seen.shape + (N_SIDE,), dtype=np.float32)
    out[..., 0] = seen
    np.log1p(cooc, out=out[..., 1])
    np.greater(cooc, 0, out=out[..., 2])
    return out


def own_share(hist: np.ndarray, table: CoocTable, ts_s: np.ndarray | None = None) -> np.ndarray:
    """(n,) what a training row's own event (at `ts_s`, Unix seconds) added to its label's window score.

    In an aged table (half_life_days > 0) the event counted its age weight, so ts_s is required.
    The event counted 1 * decay^(lag'-1) for each of its previous W items (spark_features/cooc.py);
    the window score weighs item h at lag l by decay^(l-1), so the row's share is the sum over the
    scored lags l of decay^(l-1) * sum over lags l' with the same item of decay^(l'-1).
    """
    w = min(table.window, hist.shape[1])
    recent = hist[:, hist.shape[1] - w:][:, ::-1]  # lag 1 first
    lag_w = table.decay ** np.arange(w, dtype=np.float64)
    valid = recent >= 0
    same = (recent[:, :, None] == recent[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    share = ((same * lag_w[None, None, :]).sum(axis=2) * lag_w[None, :] * valid).sum(axis=1)
    if table.half_life_days > 0:
        if ts_s is None:
            raise ValueError("an aged co-occurrence table needs the training rows' times (ts_s)")
        share = share * table.aged(ts_s)
    return share


def features_at(seen: np.ndarray, cooc: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, C, N_SIDE) float32 features of the candidates cols ((n, C) or (C,) item_idx)."""
    rows = np.arange(seen.shape[0])[:, None]
    return _stack(seen[rows, cols], cooc[rows, cols])


def add_side(z: np.ndarray, seen: np.ndarray, cooc: np.ndarray, side_w: np.ndarray) -> None:
    """z += side_w . features, in place over the whole catalog (scoring and evaluation)."""
    if side_w[0]:
        z += side_w[0] * seen
    if side_w[1] or side_w[2]:
        has = cooc > 0
        z += side_w[1] * np.log1p(cooc) + side_w[2] * has


def add_side_sparse(z: np.ndarray, side: SparseSide, side_w: np.ndarray) -> None:
    """`add_side` from SparseSide: the same float32 terms, added only where a feature is nonzero
    (through flat indices of the C-ordered z: 2-D fancy indexing costs several times more)."""
    if not z.flags.c_contiguous:  # reshape would copy, and the adds would be lost
        raise ValueError("add_side_sparse needs a C-contiguous score array")
    flat, width = z.reshape(-1), z.shape[1]
    if side.cooc is not None and side.cooc.shape[1] != width:
        raise ValueError(f"co-occurrence features over {side.cooc.shape[1]} items for scores over {width}")
    if side_w[0]:
        flat[side.seen_at(width)] += side_w[0]  # a repeated pair adds once, as seen = 1
    if side.cooc is not None and (side_w[1] or side_w[2]):
        # straight from the CSR arrays: a score <= 0 adds exactly 0 rather than being compacted
        # out (MovieLens: ~1,300 entries a row; tocoo plus the compaction took 4x the add)
        at, log1p, positive = side.cooc_terms
        flat[at] += np.where(positive, side_w[1] * log1p + side_w[2], 0).astype(z.dtype)

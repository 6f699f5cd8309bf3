"""An edge's users' whole histories: what each user saw before a given point, for any candidate.

Built from the Spark table `features/history` (every train-period item of each user at this
edge, in time order; docs/internals.md). A user's position p counts their events, so "seen
before p" is "first watched at a position < p". Training asks it per example (the example's
`user_pos`); the replay extends it with each test request before predicting, so a request's
own item and the user's earlier test requests count as seen (causal, never the future).
Lookups are vectorized: one sorted array of (user, item) keys with the first position of each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edge_nodes.errors import EdgeDataError


class UserHistory:
    """First-seen positions of (user, item) pairs, plus each user's event count so far."""

    def __init__(self, users: np.ndarray, n_items: int) -> None:
        self.users = np.asarray(users).astype(str)
        self.n_items = int(n_items)
        self._code = {u: i for i, u in enumerate(self.users.tolist())}
        self.length = np.zeros(self.users.size, dtype=np.int64)
        self.table_length = np.zeros(self.users.size, dtype=np.int64)  # events read from the table (train period)
        self._keys = np.empty(0, dtype=np.int64)   # user_code * n_items + item, sorted, unique
        self._first = np.empty(0, dtype=np.int64)  # first position of that pair

    @classmethod
    def from_table(cls, path: Path, n_items: int, extra_users: np.ndarray | None = None,
                   prefix: str = "") -> UserHistory:
        """Read features/history/edge_id=<id>; `extra_users` (e.g. the test stream's) start empty;
        `prefix` is put before every user id (pooling edges: `merge`)."""
        if not path.exists():
            raise EdgeDataError(f"user history table {path} is missing; run `edgecache features` first")
        t = pq.read_table(path, columns=["user_id", "items"])
        users = np.char.add(prefix, t["user_id"].to_numpy(zero_copy_only=False).astype(str))
        extra = np.setdiff1d(np.asarray(extra_users if extra_users is not None else [], dtype=str), users)
        h = cls(np.concatenate([users, extra]), n_items)
        col = t["items"].combine_chunks()
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        items = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)
        owner = np.repeat(np.arange(users.size), lengths)
        h._add(owner, items, _ranks(owner, lengths))
        h.length[:users.size] = lengths
        h.table_length = h.length.copy()
        return h

    @classmethod
    def merge(cls, parts: list[UserHistory]) -> UserHistory:
        """One history over several (the centralized baseline's pooled edges); user ids must differ
        between parts (prefix them by edge: a user at two edges has two histories)."""
        n_items = parts[0].n_items if parts else 0
        h = cls(np.concatenate([p.users for p in parts]) if parts else np.empty(0, str), n_items)
        if len(h._code) != h.users.size:
            raise EdgeDataError("merged user histories share user ids; prefix them by edge")
        offsets = np.cumsum([0] + [p.users.size for p in parts[:-1]])
        h.length = np.concatenate([p.length for p in parts]) if parts else h.length
        h.table_length = np.concatenate([p.table_length for p in parts]) if parts else h.table_length
        h._keys = np.concatenate([p._keys + off * n_items for p, off in zip(parts, offsets, strict=True)]
                                 ) if parts else h._keys
        h._first = np.concatenate([p._first for p in parts]) if parts else h._first
        return h

    def codes(self, users: np.ndarray) -> np.ndarray:
        """Row index of each user id (-1 for a user this history does not know)."""
        return np.fromiter((self._code.get(u, -1) for u in np.asarray(users).astype(str).tolist()),
                           dtype=np.int64, count=len(users))

    def extend(self, user_codes: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Append events (in order) to the users' histories; return each event's position."""
        user_codes, items = np.asarray(user_codes, np.int64), np.asarray(items, np.int64)
        if np.any(user_codes < 0):
            raise EdgeDataError("extend() got events of users this history does not know")
        order = np.argsort(user_codes, kind="stable")
        su = user_codes[order]
        start = np.r_[0, np.flatnonzero(su[1:] != su[:-1]) + 1] if su.size else np.empty(0, np.int64)
        rank = np.arange(su.size) - np.repeat(start, np.diff(np.r_[start, su.size]))
        pos = np.empty_like(user_codes)
        pos[order] = self.length[su] + rank
        np.add.at(self.length, user_codes, 1)
        self._add(user_codes, items, pos)
        return pos

    def seen_before(self, user_codes: np.ndarray, pos: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """bool array shaped like `cand` (rows = users): candidate first seen before row's position."""
        user_codes, cand = np.asarray(user_codes, np.int64), np.asarray(cand, np.int64)
        rows = user_codes.reshape((-1,) + (1,) * (cand.ndim - 1))
        keys = rows * self.n_items + cand
        at = np.clip(np.searchsorted(self._keys, keys), 0, max(self._keys.size - 1, 0))
        if self._keys.size == 0:
            return np.zeros(cand.shape, dtype=bool)
        hit = (self._keys[at] == keys) & (cand >= 0) & (rows >= 0)
        return hit & (self._first[at] < np.asarray(pos).reshape(rows.shape))

    def seen_pairs(self, user_codes: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) for every item row i's user first saw before pos[i]: a whole seen set at once."""
        rows, items, first = self.first_seen(user_codes)
        keep = first < np.asarray(pos, np.int64)[rows]
        return rows[keep], items[keep]

    def first_seen(self, user_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, first position) of every item in the history of row i's user (unknown: none)."""
        codes = np.asarray(user_codes, np.int64)
        known = codes >= 0
        lo = np.searchsorted(self._keys, np.where(known, codes * self.n_items, 0))
        hi = np.where(known, np.searchsorted(self._keys, (codes + 1) * self.n_items), lo)
        lens = hi - lo
        rows = np.repeat(np.arange(codes.size), lens)
        at = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(lo, lens)
        return rows, self._keys[at] % self.n_items, self._first[at]

    def repeat_share(self) -> float:
        """Share of the table's events (the training period) whose item the user had seen before
        (re-consumption); 0 if none. Events added by `extend` (the test stream) never count."""
        total = int(self.table_length.sum())
        if not total:
            return 0.0
        first_in_table = self._first < self.table_length[self._keys // self.n_items]
        return 1.0 - int(np.count_nonzero(first_in_table)) / total

    def _add(self, user_codes: np.ndarray, items: np.ndarray, pos: np.ndarray) -> None:
        keys = np.concatenate([self._keys, user_codes * self.n_items + items])
        first = np.concatenate([self._first, pos])
        order = np.lexsort((first, keys))  # by key, earliest position first
        keys, first = keys[order], first[order]
        keep = np.r_[True, keys[1:] != keys[:-1]]
        self._keys, self._first = keys[keep], first[keep]


def _ranks(owner: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """0..len-1 within each owner's run (owner is grouped and ordered)."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(owner.size, dtype=np.int64) - starts

"""Per-edge test streams for the replay, with each request's history known at that moment.

A request's history is the user's state at the time cut (features/user_state) followed by
the test events already replayed, the current one included: predictions made right after
serving request t therefore use only information up to t.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from edge_nodes.cache.flow import ItemLookup, RequestBatch
from edge_nodes.learning.history import UserHistory
from simulation.errors import RunDirError

log = logging.getLogger(__name__)

BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class EdgeStream:
    """One edge's test requests in replay order (ts, seq)."""

    edge_id: str
    item: np.ndarray
    user: np.ndarray
    device_idx: np.ndarray
    hour: np.ndarray
    ts: np.ndarray
    hist: np.ndarray
    # per request: how many of its user's events the edge knows by then, the request included
    # (train period + test requests so far; `with_history`); None = no user histories
    at: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def batches(self, size: int) -> list[RequestBatch]:
        """Consecutive slices of the stream, in order."""
        return [RequestBatch(s, self.item[s:s + size], self.user[s:s + size],
                             self.device_idx[s:s + size], self.hour[s:s + size],
                             self.hist[s:s + size], self.ts[s:s + size],
                             None if self.at is None else self.at[s:s + size])
                for s in range(0, len(self), size)]


def load_catalog(path: Path) -> ItemLookup:
    """content ids and sizes (bytes, 1 MB = 10^6 B) by item_idx."""
    if not path.is_file():
        raise RunDirError(f"{path} is missing; run `edgecache generate` first")
    t = pq.read_table(path, columns=["item_idx", "content_id", "size_mb"]).sort_by("item_idx")
    idx = t["item_idx"].to_numpy()
    if not np.array_equal(idx, np.arange(idx.size)):
        raise RunDirError(f"{path}: item_idx must be 0..{idx.size - 1} (the catalog row number)")
    sizes = np.maximum(1, np.rint(t["size_mb"].to_numpy() * BYTES_PER_MB)).astype(np.int64)
    return ItemLookup.of(t["content_id"].to_numpy(zero_copy_only=False), sizes)


def test_edges(test_root: Path) -> list[str]:
    """Edge ids that have a test stream, sorted."""
    return sorted(p.name.split("=", 1)[1] for p in test_root.glob("edge_id=*") if p.is_dir())


def load_stream(test_dir: Path, state_dir: Path | None, edge_id: str, history_len: int) -> EdgeStream:
    """Read an edge's test partition, order it by (ts, seq) and attach per-request histories."""
    t = pq.read_table(test_dir, columns=["user_id", "item_idx", "ts", "device_idx", "seq"])
    ts = t["ts"].to_numpy().astype("datetime64[ns]")
    seq = t["seq"].to_numpy()
    order = np.lexsort((seq, ts))
    user = t["user_id"].to_numpy(zero_copy_only=False).astype(str)[order]
    item = t["item_idx"].to_numpy().astype(np.int64)[order]
    device = t["device_idx"].to_numpy().astype(np.int64)[order]  # Spark's one encoder (validate.py)
    ts = ts[order]
    hour = ((ts - ts.astype("datetime64[D]")) // np.timedelta64(1, "h")).astype(np.int64)
    uniq, ucode = np.unique(user, return_inverse=True)
    init = _initial_state(state_dir, uniq, history_len)
    return EdgeStream(edge_id, item, user, device, hour, ts, build_hist(ucode, item, init))


def with_history(stream: EdgeStream, history_dir: Path, items: int) -> tuple[EdgeStream, UserHistory | None]:
    """The edge's users' whole histories (features/history) extended by the test stream in order,
    and the stream with each request's `at`: what the edge knows of its users as requests arrive.
    Reading a request's row at `at` sees the user's train period and test requests up to it, never
    a later one. No history table (an older run): (stream, None)."""
    if not history_dir.exists():
        return stream, None
    history = UserHistory.from_table(history_dir, items, extra_users=np.unique(stream.user))
    pos = history.extend(history.codes(stream.user), stream.item)
    return replace(stream, at=pos + 1), history


def _initial_state(state_dir: Path | None, users: np.ndarray, k: int) -> np.ndarray:
    """(users, k) history at the cut, oldest first, -1 padded; empty for unseen users."""
    init = np.full((users.size, k), -1, dtype=np.int64)
    if state_dir is None or not state_dir.exists():
        log.warning("no user_state at %s: replay starts every user with an empty history", state_dir)
        return init
    t = pq.read_table(state_dir, columns=["user_id", "hist"])
    pos = {u: i for i, u in enumerate(users.tolist())}
    for u, h in zip(t["user_id"].to_pylist(), t["hist"].to_pylist(), strict=True):
        i = pos.get(u)
        if i is not None and h:
            tail = list(h)[-k:]
            init[i, k - len(tail):] = tail
    return init


def build_hist(ucode: np.ndarray, item: np.ndarray, init: np.ndarray) -> np.ndarray:
    """For every request, the user's last k items up to and including it (vectorized)."""
    n, k = item.size, init.shape[1]
    order = np.argsort(ucode, kind="stable")  # grouped by user, time order kept
    su = ucode[order]
    start = np.r_[0, np.flatnonzero(su[1:] != su[:-1]) + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    hist = np.empty((n, k), dtype=np.int64)
    for lag in range(k):
        from_test = rank >= lag
        col = np.where(from_test, item[order[np.maximum(np.arange(n) - lag, 0)]],
                       init[su, np.clip(k + rank - lag, 0, k - 1)])
        hist[order, k - 1 - lag] = col
    return hist

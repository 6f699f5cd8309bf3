"""Fixtures for the federated tests (registered in tests/conftest.py).

A tiny synthetic workload with the structure the model must learn, written in the
documented layout `features/examples/edge_id=<id>/part.parquet`, with each edge's
co-occurrence counts and user histories beside them in `features/cooc/` and `features/history/`
(the Spark stage is not needed): episodes of a series follow each other (item i -> i+1), every edge has its own
taste (a different slice of the catalog is popular there), and the newest item in the
history matters most. The public `catalog.parquet` beside it names the series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SERIES_LEN = 5
START_TS = np.datetime64("2025-04-01T00:00:00", "s")


@dataclass(frozen=True)
class SyntheticRun:
    """A run directory holding only training examples, and what describes them."""

    root: Path
    edges: tuple[str, ...]
    n_items: int
    history_len: int

    @property
    def examples(self) -> Path:
        return self.root / "features" / "examples"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.parquet"


def write_catalog(path: Path, n_items: int) -> None:
    """The catalog columns the model reads: the first half of the items are 5-episode series."""
    n_series_items = (n_items // 2) // SERIES_LEN * SERIES_LEN
    idx = np.arange(n_items)
    in_series = idx < n_series_items
    pq.write_table(pa.table({
        "content_id": [f"C{i:05d}" for i in idx], "item_idx": pa.array(idx, pa.int32()),
        "series_id": [f"S{i // SERIES_LEN:03d}" if s else None for i, s in zip(idx, in_series, strict=True)],
        "season": [1 if s else None for s in in_series],
        "episode": [int(i % SERIES_LEN) + 1 if s else None for i, s in zip(idx, in_series, strict=True)],
    }), path)


def _user_items(rng: np.random.Generator, taste: np.ndarray, n_events: int, n_series_items: int) -> list[int]:
    """One user's watch sequence: binge the next episode often, else pick by the edge's taste."""
    items = [int(rng.choice(len(taste), p=taste))]
    for _ in range(n_events - 1):
        last = items[-1]
        in_series = last < n_series_items and (last + 1) % SERIES_LEN != 0
        items.append(last + 1 if in_series and rng.random() < 0.8 else int(rng.choice(len(taste), p=taste)))
    return items


def _edge_table(rng: np.random.Generator, edge_index: int, n_edges: int, n_items: int,
                history_len: int, users: int, events: int, seqs: dict[str, list[int]]) -> pa.Table:
    """One edge's examples; each user's whole sequence goes into `seqs` (the history table)."""
    n_series_items = (n_items // 2) // SERIES_LEN * SERIES_LEN
    weights = np.full(n_items, 0.2)
    lo = edge_index * n_items // n_edges
    weights[lo:lo + n_items // n_edges] = 3.0  # regional taste
    weights[:n_series_items][np.arange(n_series_items) % SERIES_LEN != 0] *= 0.2  # series start at episode 1
    taste = weights / weights.sum()
    rows: dict[str, list] = {k: [] for k in ("user_id", "ts", "user_pos", "hist", "device_idx", "hour", "dow",
                                             "label")}
    for u in range(users):
        seq = _user_items(rng, taste, events, n_series_items)
        seqs[f"U{edge_index:02d}{u:04d}"] = seq
        device = int(rng.integers(0, 5))
        t = START_TS + np.timedelta64(int(rng.integers(0, 3600 * 24)), "s")
        for i in range(1, len(seq)):
            t = t + np.timedelta64(int(rng.integers(600, 7200)), "s")
            hist = seq[max(0, i - history_len):i]
            hour = int((t - START_TS) // np.timedelta64(1, "h")) % 24
            rows["user_id"].append(f"U{edge_index:02d}{u:04d}")
            rows["ts"].append(t)
            rows["user_pos"].append(i)
            rows["hist"].append([-1] * (history_len - len(hist)) + hist)
            rows["device_idx"].append(device)
            rows["hour"].append(hour)
            rows["dow"].append(int((t - START_TS) // np.timedelta64(1, "D")) % 7)
            rows["label"].append(seq[i])
    schema = pa.schema([("user_id", pa.string()), ("ts", pa.timestamp("s")), ("user_pos", pa.int32()),
                        ("hist", pa.list_(pa.int32())),
                        ("device_idx", pa.int32()), ("hour", pa.int32()), ("dow", pa.int32()),
                        ("label", pa.int32())])
    return pa.Table.from_pydict(rows, schema=schema)


def cooc_table(examples: pa.Table, n_items: int, decay: float = 0.6) -> pa.Table:
    """Directed co-occurrence counts of one edge as Spark writes them (features/cooc), from its examples."""
    hist = np.array(examples["hist"].to_pylist(), dtype=np.int64)
    label = examples["label"].to_numpy().astype(np.int64)
    keys, weights = [], []
    for lag in range(1, hist.shape[1] + 1):
        ok = hist[:, -lag] >= 0
        keys.append(hist[ok, -lag] * n_items + label[ok])
        weights.append(np.full(int(ok.sum()), decay ** (lag - 1)))
    uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
    return pa.table({"prev_idx": pa.array(uniq // n_items, pa.int32()), "next_idx": pa.array(uniq % n_items, pa.int32()),
                     "count": np.bincount(inv, weights=np.concatenate(weights))})


def write_synthetic_run(root: Path, n_edges: int = 3, n_items: int = 40, history_len: int = 3,
                        users: int = 30, events: int = 12, seed: int = 0) -> SyntheticRun:
    """Write per-edge training examples under root/features/examples; return their description."""
    rng = np.random.default_rng(seed)
    edges = tuple(f"edge-{i:02d}" for i in range(n_edges))
    for i, edge in enumerate(edges):
        part = root / "features" / "examples" / f"edge_id={edge}"
        part.mkdir(parents=True, exist_ok=True)
        seqs: dict[str, list[int]] = {}
        table = _edge_table(rng, i, n_edges, n_items, history_len, users, events, seqs)
        pq.write_table(table, part / "part.parquet")
        history = root / "features" / "history" / f"edge_id={edge}"
        history.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"user_id": list(seqs), "items": pa.array(list(seqs.values()), pa.list_(pa.int32()))}),
                       history / "part.parquet")
        cooc = root / "features" / "cooc" / f"edge_id={edge}"
        cooc.mkdir(parents=True, exist_ok=True)
        pq.write_table(cooc_table(table, n_items), cooc / "part.parquet")
    write_catalog(root / "catalog.parquet", n_items)
    return SyntheticRun(root=root, edges=edges, n_items=n_items, history_len=history_len)


@pytest.fixture
def synthetic_run(tmp_path: Path) -> SyntheticRun:
    """3 edges, 40 items, history of 3: trains in well under a second per round."""
    return write_synthetic_run(tmp_path / "run")

"""Fixtures for the cache tests (registered in tests/conftest.py): tiny traces and run dirs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.redis_conn import edge_namespace
from edge_nodes.cache.settings import CacheSettings

CACHE_TEST_DB = 9  # the cache tests' databases: 9..12 (flushed before and after use)


def zipf_trace(n: int, items: int, seed: int, s: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(item_idx per request, size in bytes per item) with a Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, items + 1) ** s
    obj = rng.choice(items, size=n, p=p / p.sum()).astype(np.int64)
    sizes = rng.integers(100, 1000, size=items).astype(np.int64)
    return obj, sizes


# The cache tests' base: plain LRU, no prefetch price (CacheSettings' own defaults are the
# config's demand mode at price 0.8; a test asks for those explicitly).
TEST_BASE: dict[str, object] = {"eviction": "lru", "prefetch_price": 0.0}


def content_ids(items: int) -> np.ndarray:
    return np.array([f"C{i:05d}" for i in range(items)])


@pytest.fixture
def edge_cache(redis_url: str) -> Iterator[Callable[..., EdgeCache]]:
    """Factory for EdgeCaches on flushed test databases; flushes them again afterwards."""
    made: list[EdgeCache] = []

    def make(capacity: int, unit: str = "items", db: int = CACHE_TEST_DB, **kw: object) -> EdgeCache:
        kw = {**TEST_BASE, **kw}
        cache = EdgeCache(edge_namespace(redis_url, f"edge-{db:02d}", db),
                          CacheSettings(capacity=capacity, unit=unit, **kw))  # type: ignore[arg-type]
        cache.flush()
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.flush()
        cache.client.close()


def write_run(root: Path, *, edges: int = 2, users: int = 30, items: int = 80,
              train: int = 1500, test: int = 1500, seed: int = 3) -> Path:
    """A tiny run directory with the inputs the replay stage reads (as the Spark stage writes them)."""
    rng = np.random.default_rng(seed)
    ids = content_ids(items)
    size_mb = rng.uniform(0.2, 2.0, size=items).round(3)
    pq.write_table(pa.table({"item_idx": np.arange(items, dtype=np.int32), "content_id": ids,
                             "size_mb": size_mb}), root / "catalog.parquet")
    # each user binge-watches runs of consecutive items, so "next = last + 1" is learnable
    for e in range(edges):
        edge = f"edge-{e:02d}"
        uid = rng.integers(0, users, size=train + test)
        start = rng.integers(0, items, size=users)
        step = np.zeros(train + test, dtype=np.int64)
        for u in range(users):
            pos = np.flatnonzero(uid == u)
            step[pos] = np.arange(pos.size)
        item = (start[uid] + step) % items
        _write_edge(root, edge, uid, item, ids, size_mb, train, items)
    return root


def _write_edge(root: Path, edge: str, uid: np.ndarray, item: np.ndarray, ids: np.ndarray,
                size_mb: np.ndarray, train: int, items: int) -> None:
    part = f"edge_id={edge}"
    users = np.array([f"U{u:06d}" for u in uid])
    ts = np.datetime64("2025-04-10T00:00:00") + np.arange(uid.size).astype("timedelta64[m]")
    te = slice(train, None)
    table = pa.table({"user_id": users[te], "content_id": ids[item[te]],
                      "item_idx": item[te].astype(np.int32), "ts": ts[te],
                      "device": np.array(["TV", "mobile"])[uid[te] % 2], "device_idx": (uid[te] % 2).astype(np.int32),
                      "duration": np.full(uid[te].size, 30),
                      "size_mb": size_mb[item[te]], "seq": np.arange(train, uid.size)})
    _write(root / "test" / part, table)
    counts = np.bincount(item[:train], minlength=items)
    _write(root / "features/popularity" / part,
           pa.table({"item_idx": np.arange(items, dtype=np.int32), "count": counts,
                     "recency_score": counts.astype(float)}))
    nxt = (np.arange(items) + 1) % items
    _write(root / "features/markov" / part,
           pa.table({"prev_idx": np.arange(items, dtype=np.int32), "next_idx": nxt.astype(np.int32),
                     "rank": np.ones(items, dtype=np.int32), "prob": np.ones(items)}))
    last: dict[str, list[int]] = {}
    for u, i in zip(users[:train].tolist(), item[:train].tolist(), strict=True):
        last.setdefault(u, []).append(i)
    hist = [([-1] * 3 + h)[-3:] for h in last.values()]
    _write(root / "features/user_state" / part,
           pa.table({"user_id": list(last), "hist": hist, "last_ts": [ts[train - 1]] * len(last)}))


def _write(folder: Path, table: pa.Table) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")

"""Structure the model takes from the public catalog: which episode follows which.

The catalog (`catalog.parquet`, docs/internals.md) is public: every edge and the server may
read it. Only its series structure is used here; no viewing data is involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edge_nodes.errors import EdgeDataError

COLUMNS = ("item_idx", "series_id", "season", "episode")


def successor_map(series: np.ndarray, season: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """succ[i] = the row of the next episode of row i's series by (season, episode), else -1.

    `series` holds a series number per row (-1 for movies); seasons and episodes may be -1.
    """
    n = len(series)
    order = np.lexsort((np.arange(n), episode, season, series))
    same = (series[order][1:] == series[order][:-1]) & (series[order][1:] >= 0)
    succ = np.full(n, -1, dtype=np.int64)
    succ[order[:-1][same]] = order[1:][same]
    return succ


def load_successor_map(catalog_path: str | Path) -> tuple[int, ...]:
    """The successor map of a catalog file, indexed by item_idx; () when no path is given."""
    if not str(catalog_path):
        return ()
    path = Path(catalog_path)
    if not path.is_file():
        raise EdgeDataError(f"catalog {path} not found; run `edgecache generate` (or ingest) first")
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise EdgeDataError(f"{path} lacks the columns {missing} (docs/internals.md: catalog.parquet)")
    idx = table.column("item_idx").to_numpy().astype(np.int64)
    if not np.array_equal(np.sort(idx), np.arange(len(idx))):
        raise EdgeDataError(f"{path}: item_idx must be 0..{len(idx) - 1}, each once")
    series = pc.dictionary_encode(table.column("series_id")).combine_chunks()
    codes = series.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    season, episode = (table.column(c).fill_null(-1).to_numpy().astype(np.int64) for c in ("season", "episode"))
    rows = successor_map(codes, season, episode)
    succ = np.full(len(idx), -1, dtype=np.int64)
    succ[idx[rows >= 0]] = idx[rows[rows >= 0]]
    return tuple(int(s) for s in succ)

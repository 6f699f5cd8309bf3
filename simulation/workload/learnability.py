"""Is the workload learnable? A first-order "next item given the previous one" predictor vs
global popularity, both fit on the training days and scored by hit@k on the test days.

A uniform log would make the two tie (and predictive caching pointless); the generator's
binge chains, genre tastes and regional popularity should give the sequence model a clear
lead. Reads a run directory's logs, skipping the malformed lines a dirty run contains.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from edge_nodes.devices import DEVICES


def load_clean_events(run_root: Path) -> dict[str, np.ndarray]:
    """user, item, ts (epoch s), edge of every well-formed JSONL event of a run (dirty lines skipped)."""
    cids = pq.read_table(run_root / "catalog.parquet", columns=["content_id"]).column(0).to_pylist()
    item_of = {c: i for i, c in enumerate(cids)}
    users: dict[str, int] = {}
    rows: list[tuple[int, int, int, int]] = []
    edge_dirs = sorted((run_root / "logs").glob("edge=*"))
    for e, folder in enumerate(edge_dirs):
        for part in sorted(folder.glob("part-*.jsonl")):
            for line in part.open():
                ev = _parse(line, item_of)
                if ev is not None:
                    rows.append((users.setdefault(ev[0], len(users)), ev[1], ev[2], e))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return {"user": arr[:, 0], "item": arr[:, 1], "ts": arr[:, 2], "edge": arr[:, 3], "n_items": np.asarray(len(cids))}


def _parse(line: str, item_of: dict[str, int]) -> tuple[str, int, int] | None:
    try:
        d = json.loads(line)
        ts = datetime.datetime.strptime(d["timestamp"], "%Y-%m-%d %H:%M:%S")
        ok = d["device"] in DEVICES and isinstance(d["duration"], int) and d["duration"] >= 0
        return (d["user_id"], item_of[d["content_id"]], int(ts.timestamp())) if ok else None
    except (ValueError, KeyError, TypeError):
        return None


def hit_at_k(ev: dict[str, np.ndarray], cut_ts: int, k: int = 10) -> dict[str, Any]:
    """hit@k on events at or after cut_ts for global popularity and first-order transitions."""
    n_items = int(ev["n_items"])
    order = np.lexsort((ev["ts"], ev["user"]))
    user, item, ts = ev["user"][order], ev["item"][order], ev["ts"][order]
    same = np.r_[False, user[1:] == user[:-1]]
    prev = np.where(same, np.r_[-1, item[:-1]], -1)
    train, test = ts < cut_ts, ts >= cut_ts
    popular = np.argsort(-np.bincount(item[train], minlength=n_items), kind="stable")[:k]
    pairs = train & (prev >= 0)
    table = _top_next(prev[pairs], item[pairs], n_items, popular, k)
    pop_hit = np.isin(item[test], popular)
    rows = np.where(prev[test] >= 0, prev[test], n_items)  # no previous item: popularity row
    markov_hit = (table[rows] == item[test][:, None]).any(axis=1)
    return {"k": k, "test_events": int(test.sum()), "train_events": int(train.sum()),
            "popularity_hit": round(float(pop_hit.mean()), 4), "markov_hit": round(float(markov_hit.mean()), 4)}


def _top_next(prev: np.ndarray, nxt: np.ndarray, n_items: int, popular: np.ndarray, k: int) -> np.ndarray:
    """(n_items + 1, k) most frequent next items per previous item, topped up with popular ones."""
    key, count = np.unique(prev * n_items + nxt, return_counts=True)
    p, q = key // n_items, key % n_items
    o = np.lexsort((q, -count, p))
    p, q = p[o], q[o]
    rank = np.arange(len(p)) - np.searchsorted(p, p)
    table = np.full((n_items + 1, k), -1, dtype=np.int64)
    keep = rank < k
    table[p[keep], rank[keep]] = q[keep]
    for r in range(n_items + 1):  # a loop over items (not events) to top up short rows
        have = table[r][table[r] >= 0]
        fill = popular[~np.isin(popular, have)][: k - len(have)]
        table[r, len(have):len(have) + len(fill)] = fill
    return table


def evaluate_run(run_root: Path, start_date: str, train_days: int, k: int = 10) -> dict[str, Any]:
    """Load a generated run and compare the two predictors at the train/test cut."""
    cut = datetime.datetime.fromisoformat(start_date) + datetime.timedelta(days=train_days)
    return hit_at_k(load_clean_events(run_root), int(cut.timestamp()), k)

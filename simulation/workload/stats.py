"""Workload statistics: popularity skew, sequential continuations, how different edges are.

Accumulated chunk by chunk (an edges x items count matrix, a few counters), so the summary
costs nothing extra and needs no second pass over the logs.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint)."""
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def mean_pairwise_jsd(counts: np.ndarray) -> float:
    """Mean JSD over all pairs of rows (edges) that have at least one event."""
    rows = [r for r in counts if r.sum() > 0]
    pairs = list(combinations(range(len(rows)), 2))
    if not pairs:
        return 0.0
    return float(np.mean([jensen_shannon(rows[a].astype(float), rows[b].astype(float)) for a, b in pairs]))


def zipf_exponent(counts: np.ndarray, head: float = 0.1) -> float:
    """Slope of log(count) vs log(rank) over the top `head` share of items (at least 10)."""
    c = np.sort(counts[counts > 0])[::-1].astype(float)
    k = min(len(c), max(10, int(len(counts) * head)))
    if k < 2:
        return 0.0
    slope = np.polyfit(np.log(np.arange(1, k + 1)), np.log(c[:k]), 1)[0]
    return float(-slope)


def top_share(counts: np.ndarray, share: float = 0.01) -> float:
    """Share of events that go to the top `share` of items."""
    k = max(1, int(round(len(counts) * share)))
    total = counts.sum()
    return float(np.sort(counts)[::-1][:k].sum() / total) if total else 0.0


class WorkloadStats:
    """Running totals over the chunks of a run."""

    def __init__(self, edges: list[str], n_items: int, cut_s: int, kinds: tuple[str, ...]) -> None:
        self.edges, self.n_items, self.cut_s, self.kinds = edges, n_items, cut_s, kinds
        self.counts = np.zeros((len(edges), n_items), dtype=np.int64)
        self.cont = self.train = 0
        self.dirty = np.zeros((len(edges), len(kinds)), dtype=np.int64)

    def add(self, edge: np.ndarray, item: np.ndarray, ts: np.ndarray, cont: np.ndarray) -> None:
        """Count a chunk of clean events."""
        flat = edge.astype(np.int64) * self.n_items + item
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        self.cont += int(cont.sum())
        self.train += int((ts < self.cut_s).sum())

    def add_dirty(self, edge: np.ndarray, kind: np.ndarray) -> None:
        """Count injected dirty lines by edge and kind."""
        np.add.at(self.dirty, (edge.astype(np.int64), kind), 1)

    def summary(self) -> dict[str, Any]:
        """The numbers for results.json `workload` and the printed summary."""
        per_edge = self.counts.sum(axis=1)
        total = int(per_edge.sum())
        glob = self.counts.sum(axis=0)
        return {
            "events": total, "lines": total + int(self.dirty.sum()),
            "train_events": self.train, "test_events": total - self.train,
            "events_per_edge": {e: int(n) for e, n in zip(self.edges, per_edge, strict=True)},
            "zipf_exponent": round(zipf_exponent(glob), 4),
            "top1pct_share": round(top_share(glob), 4),
            "continuation_share": round(self.cont / total, 4) if total else 0.0,
            "mean_pairwise_jsd": round(mean_pairwise_jsd(self.counts), 4),
            "dirty_injected": {
                "total": int(self.dirty.sum()),
                "by_kind": {k: int(n) for k, n in zip(self.kinds, self.dirty.sum(axis=0), strict=True)},
                "per_edge": {e: {k: int(n) for k, n in zip(self.kinds, row, strict=True) if n}
                             for e, row in zip(self.edges, self.dirty, strict=True)},
            },
        }

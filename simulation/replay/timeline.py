"""Cumulative hit ratio over the test period, per policy, summed over edges (results.json `timeline`).

Each policy's per-request hit flags are folded into hourly counts as its edges are replayed
(no per-request arrays are kept); the summary samples the cumulative ratio at up to `points`
evenly spaced times from the first to the last test hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Timeline:
    """Hourly hits and requests per policy, over every edge replayed so far."""

    counts: dict[str, list[np.ndarray]] = field(default_factory=dict)  # policy -> [(hour, hits, requests)]

    def add(self, policy: str, ts: np.ndarray, hits: np.ndarray) -> None:
        """Fold one edge's per-request hit flags (request times `ts`) into hourly counts."""
        if ts.size == 0:
            return
        hour = ts.astype("datetime64[h]").astype(np.int64)
        uniq, inv = np.unique(hour, return_inverse=True)
        rows = np.stack([uniq, np.bincount(inv, weights=hits.astype(np.int64)).astype(np.int64),
                         np.bincount(inv).astype(np.int64)])
        self.counts.setdefault(policy, []).append(rows)

    def summary(self, points: int = 96) -> dict[str, Any]:
        """{"t": hour labels, "days": days since the first test hour, "policies": {p: cumulative ratio}}."""
        if not self.counts:
            return {}
        per_policy = {p: np.concatenate(rows, axis=1) for p, rows in self.counts.items()}
        lo = min(int(r[0].min()) for r in per_policy.values())
        hi = max(int(r[0].max()) for r in per_policy.values())
        grid = np.unique(np.linspace(lo, hi, num=min(points, hi - lo + 1)).round().astype(np.int64))
        out: dict[str, Any] = {
            "note": "cumulative hit ratio (all edges) up to the end of each sampled hour of the test period",
            "t": [str(np.datetime64(int(h), "h")) for h in grid.tolist()],
            "days": [round((h - lo) / 24.0, 4) for h in grid.tolist()],
            "policies": {}}
        for policy, rows in per_policy.items():
            order = np.argsort(rows[0], kind="stable")
            hour, cum_hits, cum_req = rows[0][order], np.cumsum(rows[1][order]), np.cumsum(rows[2][order])
            at = np.searchsorted(hour, grid, side="right") - 1  # last hour <= each grid point
            ratio = np.where(at >= 0, cum_hits[np.maximum(at, 0)] / np.maximum(cum_req[np.maximum(at, 0)], 1), 0.0)
            out["policies"][policy] = [round(float(v), 6) for v in ratio]
        return out

"""Vectorized categorical sampling: one draw per row from the row's own distribution.

The generator draws millions of choices where each event has its own distribution (its
user's genre taste, its edge's popularity within a genre). Instead of a Python loop, all
distributions are laid end to end as one cumulative array, group k shifted by +k, and a
single `searchsorted` of `k + u` (u uniform in [0, 1)) finds every draw at once.
"""

from __future__ import annotations

import numpy as np


class GroupedSampler:
    """Sample from many categorical distributions that share one flat list of outcomes."""

    def __init__(self, weights: np.ndarray, starts: np.ndarray) -> None:
        """`weights` is the flat outcome weights; group k owns weights[starts[k]:starts[k+1]]."""
        weights = np.asarray(weights, dtype=np.float64)
        starts = np.asarray(starts, dtype=np.int64)
        self.starts = starts
        self.ends = np.append(starts[1:], len(weights))
        sizes = self.ends - self.starts
        group = np.repeat(np.arange(len(starts)), sizes)
        csum = np.cumsum(weights)
        before = np.concatenate(([0.0], csum))[self.starts]
        total = csum[self.ends - 1] - before if len(weights) else np.zeros(len(starts))
        total = np.where(sizes > 0, total, 0.0)
        within = csum - np.repeat(before, sizes)
        # A group whose weights are all zero falls back to uniform, so a draw never fails.
        flat = np.repeat(total <= 0, sizes)
        rank = np.arange(len(weights)) - np.repeat(self.starts, sizes) + 1.0
        tot = np.repeat(np.where(total > 0, total, sizes.astype(np.float64)), sizes)
        self.cdf = group + np.where(flat, rank, within) / np.maximum(tot, 1e-300)
        self.cdf[self.ends[sizes > 0] - 1] = np.arange(len(starts))[sizes > 0] + 1.0

    def draw(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Flat outcome index for each (group, uniform) pair."""
        idx = np.searchsorted(self.cdf, group + u, side="right")
        return np.clip(idx, self.starts[group], self.ends[group] - 1)


def row_choice(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw a column per row from a small (rows x k) cumulative matrix, e.g. genre tastes."""
    return np.minimum((u[:, None] >= cum[rows]).sum(axis=1), cum.shape[1] - 1)


def cumulative(p: np.ndarray) -> np.ndarray:
    """Row-normalized cumulative probabilities whose last column is exactly 1."""
    c = np.cumsum(p, axis=-1)
    c = c / c[..., -1:]
    c[..., -1] = 1.0
    return c

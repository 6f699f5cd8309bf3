"""The one interface between learning and the cache: a batch of user states -> top-k next items.

Lives beside both rooms so the cache (edge_nodes/cache/) serves any predictor without importing
the models (edge_nodes/learning/), and a user can bring their own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Predictor(Protocol):
    """Top-k next items for a batch of user states."""

    name: str

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        """(n, k) int item_idx, -1 padded. `users` (the rows' user ids) lets a predictor use what the
        edge knows of each user beyond `hist` (its whole history at the edge); None = hist only.
        `at` (n,): how many of the user's events the edge knew when the row was made (the row's own
        request included), so a row reads only its user's history before it; None = all it knows.
        `ts` (n,) datetime64: when each row was made, for what the federation learns after the cut
        (itemcf's refreshed counts, cooc_live.py); None = as at the cut. Ignore what you do not use."""
        ...

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) int item_idx, -1 padded, and (n, k) probabilities (0 where -1)."""
        ...

"""`pooled`: the position-weighted sum of the last k items' embeddings (the original model).

One learned weight per history position (the most recent starts heaviest, at a recency decay).
Cheap, order-aware only through those weights; with the shared catalog links it carries binge
continuation well, which is what the synthetic default rewards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_nodes.learning.kinds.base import Kind, history_embeddings


class Pooled(Kind):
    name = "pooled"
    doc = "position-weighted sum of the history's embeddings (the default)"

    def encoder_shapes(self, dim: int, history_len: int) -> dict[str, tuple[int, ...]]:
        return {"pos_w": (history_len,)}

    def init_encoder(self, dim: int, history_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"pos_w": 0.5 ** np.arange(history_len - 1, -1, -1, dtype=np.float64)}

    def encode(self, xp: Any, p: Mapping[str, Any], hist: Any) -> Any:
        emb, _ = history_embeddings(xp, p, hist)
        return (emb * p["pos_w"][None, :, None]).sum(axis=1)


KIND = Pooled()

"""`gru4rec`: a GRU over the history, its last hidden state the user's state (Hidasi et al. 2016).

One GRU layer of width `model.dim` reads the history oldest first; padded positions leave the
hidden state unchanged. A linear map of the last hidden state (which a tanh bounds to [-1, 1])
is the state the shared head scores. Trained with the shared sampled softmax and logQ correction
rather than GRU4Rec's session-parallel mini-batches and TOP1/BPR losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_nodes.learning.kinds.base import Kind, history_embeddings, normal, sigmoid


class Gru4Rec(Kind):
    name = "gru4rec"
    doc = "a GRU over the history (Hidasi et al. 2016)"

    def encoder_shapes(self, dim: int, history_len: int) -> dict[str, tuple[int, ...]]:
        # input and recurrent weights of the update, reset and candidate gates, side by side
        return {"gru_wx": (dim, 3 * dim), "gru_wh": (dim, 3 * dim), "gru_b": (3 * dim,), "gru_out": (dim, dim)}

    def init_encoder(self, dim: int, history_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"gru_wx": normal(rng, (dim, 3 * dim), dim), "gru_wh": normal(rng, (dim, 3 * dim), dim),
                "gru_b": np.zeros(3 * dim), "gru_out": normal(rng, (dim, dim), dim)}

    def encode(self, xp: Any, p: Mapping[str, Any], hist: Any) -> Any:
        x, mask = history_embeddings(xp, p, hist)
        n, k, d = x.shape
        gx = x @ p["gru_wx"] + p["gru_b"]  # every step's input part at once
        h = xp.zeros((n, d), dtype=x.dtype)
        for j in range(k):  # k <= 64: unrolled, one small matmul per step
            gh = h @ p["gru_wh"]
            z = sigmoid(xp, gx[:, j, :d] + gh[:, :d])
            r = sigmoid(xp, gx[:, j, d:2 * d] + gh[:, d:2 * d])
            cand = xp.tanh(gx[:, j, 2 * d:] + r * gh[:, 2 * d:])
            h = xp.where(mask[:, j:j + 1], (1.0 - z) * h + z * cand, h)
        return h @ p["gru_out"]


KIND = Gru4Rec()

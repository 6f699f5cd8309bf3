"""`sasrec`: two blocks of causal self-attention over the history (Kang & McAuley 2018).

Item embeddings plus learned position embeddings; each block is pre-norm single-head causal
attention and a ReLU feed-forward layer, both residual; padding is neither attended to nor kept.
The last position's output, layer-normed, is the user's state (the last block computes only that
position's query and feed-forward: the only output the head scores). No dropout (the training
step carries no random key): regularize with `model.l2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_nodes.learning.kinds.base import Kind, history_embeddings, normal

BLOCKS = 2
_BLOCK = ("ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g", "ln2_b", "ff_w1", "ff_b1", "ff_w2", "ff_b2")


def _layer_norm(xp: Any, x: Any, g: Any, b: Any) -> Any:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / xp.sqrt(var + 1e-6) * g + b


class SasRec(Kind):
    name = "sasrec"
    doc = f"{BLOCKS} blocks of causal self-attention over the history (Kang & McAuley 2018)"

    def encoder_shapes(self, dim: int, history_len: int) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"pos_emb": (history_len, dim)}
        for b in range(BLOCKS):
            for name in _BLOCK:
                shapes[f"b{b}.{name}"] = (dim, dim) if name[0] == "w" or name in ("ff_w1", "ff_w2") else (dim,)
        return {**shapes, "ln_g": (dim,), "ln_b": (dim,)}

    def init_encoder(self, dim: int, history_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for name, shape in self.encoder_shapes(dim, history_len).items():
            short = name.rsplit(".", 1)[-1]
            out[name] = (np.ones(shape) if short.endswith("_g") else
                         np.zeros(shape) if short.endswith("_b") or short.startswith("ff_b") else
                         normal(rng, shape, dim))
        return out

    def encode(self, xp: Any, p: Mapping[str, Any], hist: Any) -> Any:
        emb, mask = history_embeddings(xp, p, hist)
        n, k, d = emb.shape
        x = emb + p["pos_emb"][None] * mask[:, :, None]
        causal = np.tril(np.ones((k, k), dtype=bool))
        # a position sees itself and the real items before it (itself too when padding: no empty row)
        allowed = (mask[:, None, :] | np.eye(k, dtype=bool)[None]) & causal[None]
        for b in range(BLOCKS):
            w = {name: p[f"b{b}.{name}"] for name in _BLOCK}
            last = b == BLOCKS - 1
            y = _layer_norm(xp, x, w["ln1_g"], w["ln1_b"])
            q = (y[:, -1:] if last else y) @ w["wq"]
            att = xp.einsum("nid,njd->nij", q, y @ w["wk"]) / np.sqrt(d)
            att = xp.where(allowed[:, -1:] if last else allowed, att, -1e9)
            att = xp.exp(att - att.max(axis=-1, keepdims=True))
            att = att / att.sum(axis=-1, keepdims=True)
            x = (x[:, -1:] if last else x) + xp.einsum("nij,njd->nid", att, y @ w["wv"]) @ w["wo"]
            y = _layer_norm(xp, x, w["ln2_g"], w["ln2_b"])
            x = x + xp.maximum(y @ w["ff_w1"] + w["ff_b1"], 0.0) @ w["ff_w2"] + w["ff_b2"]
            if not last:
                x = x * mask[:, :, None]
        return _layer_norm(xp, x[:, -1], p["ln_g"], p["ln_b"])


KIND = SasRec()

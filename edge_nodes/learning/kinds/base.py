"""The small interface every model kind implements: an encoder from a user's history to a state.

A kind owns only the encoder (its arrays, their shapes and initial values, and the forward pass).
Everything around it is shared by every kind and lives in model.py: the item embeddings the
history is read through, the device and hour embeddings added to the state, and the scoring
head over the catalog (output embeddings, item bias, catalog links, side weights). So every kind
trains with the same sampled softmax and logQ correction, is evaluated over the full catalog,
ships as one list of named arrays, and runs unchanged under every strategy, DP and FedPer.

`encode` is written once against an array module `xp` (numpy or jax.numpy): numpy serves the
replay and evaluation, JAX traces the same code for the jitted training step (objective.py), so
no kind has a second forward pass to keep in step. It uses only operations both modules share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

# The shared head: arrays every kind has, before and after its encoder's arrays.
LEAD = ("item_emb",)
HEAD = ("device_emb", "hour_emb", "out_emb", "out_bias", "link_w", "side_w")
# Head arrays an edge may keep for itself (FedPer, federated.local_layers): the item embeddings
# and every encoder array are always shared, so the server can read the model's shape.
LOCAL_OK = ("out_bias", "link_w", "out_emb")


class Kind(ABC):
    """One model kind: `name` (the `model.kind` value), its encoder's arrays and forward pass."""

    name: str
    doc: str

    @abstractmethod
    def encoder_shapes(self, dim: int, history_len: int) -> dict[str, tuple[int, ...]]:
        """The encoder's arrays and their shapes, in a fixed order (their names are stable)."""

    @abstractmethod
    def init_encoder(self, dim: int, history_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial values of the encoder's arrays (float64; model.init_params casts them)."""

    @abstractmethod
    def encode(self, xp: Any, p: Mapping[str, Any], hist: Any) -> Any:
        """The history's part of the user state, (n, dim), from hist (n, k) item_idx oldest first,
        -1 padded on the left; `p` maps every array name (shared and encoder) to its array."""

    def param_names(self, dim: int, history_len: int) -> tuple[str, ...]:
        return LEAD + tuple(self.encoder_shapes(dim, history_len)) + HEAD


def normal(rng: np.random.Generator, shape: tuple[int, ...], dim: int) -> np.ndarray:
    """N(0, 1/dim) entries: unit-scale activations through a (dim, dim) matrix."""
    return rng.normal(0.0, 1.0 / np.sqrt(dim), shape)


def history_embeddings(xp: Any, p: Mapping[str, Any], hist: Any) -> tuple[Any, Any]:
    """The history's item embeddings (n, k, dim), zero at padding, and the mask (n, k)."""
    mask = hist >= 0
    return p["item_emb"][xp.where(mask, hist, 0)] * mask[:, :, None], mask


def sigmoid(xp: Any, x: Any) -> Any:
    return 1.0 / (1.0 + xp.exp(-x))

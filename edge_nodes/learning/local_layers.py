"""Partial personalization (FedPer): parameters that stay on the edge and are never sent.

`federated.local_layers` names head arrays of the model (kinds.LOCAL_OK, e.g. "out_bias": the
item bias, i.e. regional popularity) that each edge keeps for itself; every model kind has them. The server, its strategy and DP
only ever see the other, shared arrays; an edge composes the shared arrays it receives
with its own local ones, trains the whole model, and replies with the shared part only.

    models/local_layers/<edge>.npz   the edge's local arrays, kept between rounds
    models/federated/<edge>.npz      global shared arrays + that edge's local ones (a model file)

A fresh run (global round 1) starts the local arrays from the model's initial values; a
resumed run continues from the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_nodes.errors import ModelFileError
from edge_nodes.learning.kinds import LOCAL_OK
from edge_nodes.learning.model import ModelSpec, Params, init_params

LOCAL_DIR = "local_layers"
COMPOSED_DIR = "federated"


def parse_names(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Layer names from a comma-separated string or a sequence; names outside LOCAL_OK raise."""
    names = tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip())
    unknown = [n for n in names if n not in LOCAL_OK]
    if unknown:
        raise ModelFileError(f"federated.local_layers names {unknown}; choose from {', '.join(LOCAL_OK)} "
                             "(the item embeddings and the history encoder are always shared)")
    return names


def shared_names(local: tuple[str, ...], spec: ModelSpec) -> tuple[str, ...]:
    """The arrays the server aggregates, in spec.param_names order."""
    return tuple(n for n in spec.param_names if n not in local)


def split(params: Params, local: tuple[str, ...], spec: ModelSpec) -> tuple[Params, dict[str, np.ndarray]]:
    """(shared arrays in param_names order, {local name: array})."""
    named = dict(zip(spec.param_names, params, strict=True))
    return [named[n] for n in shared_names(local, spec)], {n: named[n] for n in local}


def compose(shared: Params, own: dict[str, np.ndarray], local: tuple[str, ...], spec: ModelSpec) -> Params:
    """The full parameter list from the shared arrays and an edge's local ones."""
    names = shared_names(local, spec)
    if len(shared) != len(names):
        raise ModelFileError(f"got {len(shared)} shared arrays, expected {len(names)} ({', '.join(names)})")
    named = {**dict(zip(names, shared, strict=True)), **own}
    return [named[n] for n in spec.param_names]


def spec_of_shared(shared: Params, history_len: int, kind: str, successor: tuple[int, ...]) -> ModelSpec:
    """The model spec: catalog size and width from the item embeddings (the first array, always
    shared), history length and kind as the server's config states them (checked on compose)."""
    if not shared or shared[0].ndim != 2:
        raise ModelFileError("the received arrays do not start with the item embeddings (n_items, dim)")
    return ModelSpec(n_items=shared[0].shape[0], dim=shared[0].shape[1], history_len=history_len,
                     kind=kind, successor=successor)


def local_path(model_dir: str | Path, edge_id: str) -> Path:
    return Path(model_dir) / LOCAL_DIR / f"{edge_id}.npz"


def composed_path(model_dir: str | Path, edge_id: str) -> Path:
    return Path(model_dir) / COMPOSED_DIR / f"{edge_id}.npz"


def initial_local(spec: ModelSpec, local: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    """The local arrays of the server's initial model (same seed, same values)."""
    return split(init_params(spec, np.random.default_rng(seed)), local, spec)[1]


def load_local(model_dir: str | Path, edge_id: str, spec: ModelSpec, local: tuple[str, ...],
               seed: int, fresh: bool) -> dict[str, np.ndarray]:
    """The edge's kept local arrays; initial values on a fresh run or when none (matching) are kept."""
    path = local_path(model_dir, edge_id)
    if fresh or not path.is_file():
        return initial_local(spec, local, seed)
    with np.load(path, allow_pickle=False) as data:
        if set(data.files) != set(local):
            return initial_local(spec, local, seed)
        own = {n: data[n].astype(np.float32) for n in local}
    want = dict(zip(spec.param_names, spec.shapes(), strict=True))
    if any(own[n].shape != want[n] for n in local):
        raise ModelFileError(f"{path} holds local layers of another model shape; delete it to start over")
    return own


def save_local(model_dir: str | Path, edge_id: str, own: dict[str, np.ndarray]) -> Path:
    """Keep the edge's local arrays on the edge's own disk, atomically."""
    path = local_path(model_dir, edge_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **own)  # type: ignore[arg-type]
    tmp.replace(path)
    return path

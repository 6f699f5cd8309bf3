"""The next-content model: pooled history embeddings + context, a softmax over the catalog.

A user's state is the position-weighted sum of the embeddings of their last k items (the
most recent item weighs most at start; the weights are learned) plus a device and an hour
embedding. Every catalog item is scored by a dot product with its output embedding plus a
bias, and the model is trained with softmax cross-entropy and Adam. Parameters are a plain
list of float32 arrays so Flower can ship them as an ArrayRecord.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_nodes.errors import ModelFileError

Params = list[np.ndarray]
PARAM_NAMES = ("item_emb", "pos_w", "device_emb", "hour_emb", "out_emb", "out_bias")
N_DEVICES = 5  # TV, mobile, tablet, web, console (docs/internals.md order)
N_HOURS = 24


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a model: catalog size, embedding width and history length."""

    n_items: int
    dim: int
    history_len: int
    n_devices: int = N_DEVICES
    n_hours: int = N_HOURS

    @classmethod
    def from_params(cls, params: Params) -> ModelSpec:
        """The spec a parameter list was built for (shapes carry every dimension)."""
        return cls(n_items=params[0].shape[0], dim=params[0].shape[1], history_len=params[1].shape[0],
                   n_devices=params[2].shape[0], n_hours=params[3].shape[0])

    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the parameter arrays, in PARAM_NAMES order."""
        return [(self.n_items, self.dim), (self.history_len,), (self.n_devices, self.dim),
                (self.n_hours, self.dim), (self.n_items, self.dim), (self.n_items,)]


@dataclass
class Batch:
    """Model inputs: hist (n, k) item_idx oldest first, -1 padded; device, hour, label (n,)."""

    hist: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    label: np.ndarray | None = None


def init_params(spec: ModelSpec, rng: np.random.Generator) -> Params:
    """Small random embeddings; position weights start at a recency decay (last item = 1)."""
    scale = 1.0 / np.sqrt(spec.dim)
    pos = 0.5 ** np.arange(spec.history_len - 1, -1, -1, dtype=np.float64)
    arrays = [rng.normal(0.0, scale, s) for s in spec.shapes()]
    arrays[1] = pos
    arrays[5] = np.zeros(spec.n_items)
    return [a.astype(np.float32) for a in arrays]


def check_params(params: Params, spec: ModelSpec) -> None:
    """Raise ModelFileError when arrays do not match the spec (wrong model or catalog)."""
    got = [tuple(p.shape) for p in params]
    if got != spec.shapes():
        raise ModelFileError(f"parameter shapes {got} do not match {spec}; the model was trained "
                             "for another catalog size, dim or history length")


def _state(params: Params, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """User state (n, dim) and the history mask (n, k)."""
    item_emb, pos_w, dev_emb, hour_emb = params[:4]
    mask = batch.hist >= 0
    emb = item_emb[np.where(mask, batch.hist, 0)] * (mask * pos_w)[:, :, None]
    return emb.sum(axis=1) + dev_emb[batch.device] + hour_emb[batch.hour], mask


def scores(params: Params, batch: Batch) -> np.ndarray:
    """Logits (n, n_items) for every catalog item."""
    u, _ = _state(params, batch)
    return u @ params[4].T + params[5]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss_and_grads(params: Params, batch: Batch, l2: float = 0.0) -> tuple[float, Params]:
    """Mean cross-entropy (+ l2/2 * |params|^2) and its exact gradient w.r.t. every array."""
    assert batch.label is not None
    item_emb, pos_w, _, _, out_emb, _ = params
    n = len(batch.label)
    u, mask = _state(params, batch)
    logp = _log_softmax(u @ out_emb.T + params[5])
    rows = np.arange(n)
    loss = -float(logp[rows, batch.label].mean())
    dz = np.exp(logp)
    dz[rows, batch.label] -= 1.0
    dz /= n
    du = dz @ out_emb
    grads = [np.zeros_like(p) for p in params]
    grads[4] = dz.T @ u
    grads[5] = dz.sum(axis=0)
    np.add.at(grads[2], batch.device, du)
    np.add.at(grads[3], batch.hour, du)
    hist = np.where(mask, batch.hist, 0)
    grads[1] = ((item_emb[hist] * du[:, None, :]).sum(axis=2) * mask).sum(axis=0)
    contrib = du[:, None, :] * (mask * pos_w)[:, :, None]
    np.add.at(grads[0], hist[mask], contrib[mask])
    if l2 > 0:
        loss += 0.5 * l2 * sum(float((p.astype(np.float64) ** 2).sum()) for p in params)
        grads = [g + l2 * p for g, p in zip(grads, params, strict=True)]
    return loss, [g.astype(np.float32) for g in grads]


@dataclass
class Adam:
    """Adam optimizer state for a parameter list (moments start at zero)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: Params = field(default_factory=list)
    v: Params = field(default_factory=list)

    def step(self, params: Params, grads: Params) -> Params:
        """Return updated parameters (inputs are not modified)."""
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        c1, c2 = 1.0 - self.beta1 ** self.t, 1.0 - self.beta2 ** self.t
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
            upd = self.lr * (self.m[i] / c1) / (np.sqrt(self.v[i] / c2) + self.eps)
            out.append((p - upd).astype(np.float32))
        return out


def top_k(params: Params, spec: ModelSpec, hist: np.ndarray, device_idx: np.ndarray,
          hour: np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring item_idx per row, best first: an (n, k) int array."""
    return top_k_with_probs(params, spec, hist, device_idx, hour, k)[0]


def top_k_with_probs(params: Params, spec: ModelSpec, hist: np.ndarray, device_idx: np.ndarray,
                     hour: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best item_idx per row and their softmax probabilities: ((n, k) int, (n, k) float)."""
    check_params(params, spec)
    k = min(k, spec.n_items)
    batch = Batch(np.asarray(hist, dtype=np.int64).reshape(len(device_idx), -1),
                  np.asarray(device_idx, dtype=np.int64), np.asarray(hour, dtype=np.int64))
    logp = _log_softmax(scores(params, batch))
    part = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logp, part, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    return best.astype(np.int64), np.exp(np.take_along_axis(logp, best, axis=1))


def save_params(path: str | Path, params: Params, spec: ModelSpec) -> Path:
    """Write arrays + spec to one .npz (no pickled objects), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_params(params, spec)
    arrays = {name: p for name, p in zip(PARAM_NAMES, params, strict=True)}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, spec=np.array(json.dumps(asdict(spec))), **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def load_params(path: str | Path) -> tuple[Params, ModelSpec]:
    """Read a model written by save_params (allow_pickle=False)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found; run `edgecache train` first")
    try:
        with np.load(path, allow_pickle=False) as data:
            spec = ModelSpec(**json.loads(str(data["spec"])))
            params = [data[name].astype(np.float32) for name in PARAM_NAMES]
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path} is not an edgecache model file ({e})") from e
    check_params(params, spec)
    return params, spec

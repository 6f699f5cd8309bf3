"""The next-content model: a history encoder + context + catalog links, scored over the catalog.

A user's state is what the model kind's encoder (kinds/: `pooled`, the position-weighted sum
of the last k items' embeddings; `gru4rec`; `sasrec`) makes of their history, plus a device
and an hour embedding. Every catalog item is scored by a dot product with its output embedding, a bias
(its popularity), and learned weights on two links the public catalog and the history give:
"this item is the next episode after history item j" and "this item is history item j".
One scalar then carries binge continuation, which a low-rank factorization spreads thin.
Three more weights (`side_w`, side.py) score what the edge knows beyond the window: whether
the user saw the item anywhere in their history, and its federated co-occurrence count.
Parameters are a plain list of float32 arrays so Flower can ship them as an ArrayRecord;
the successor map is part of the spec (public catalog structure, not learned, not shipped).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from edge_nodes.devices import N_DEVICES
from edge_nodes.errors import ModelFileError
from edge_nodes.learning.kinds import get_kind
from edge_nodes.learning.side import N_SIDE, SparseSide, add_side, add_side_sparse

Params = list[np.ndarray]
# the `pooled` kind's arrays (model files written before model.kind existed); spec.param_names in general
PARAM_NAMES = ("item_emb", "pos_w", "device_emb", "hour_emb", "out_emb", "out_bias", "link_w", "side_w")
N_HOURS = 24
N_LINKS = 2  # link kinds per history position: next episode of h_j, h_j itself


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a model (catalog size, width, history length, kind) and the catalog's successor map.

    `kind` names the history encoder (kinds/, `model.kind`). `successor[i]` is the item_idx of the episode after item i in its series, -1 if none; an
    empty tuple means no catalog structure is known (the link weights then see no successor).
    """

    n_items: int
    dim: int
    history_len: int
    n_devices: int = N_DEVICES
    n_hours: int = N_HOURS
    kind: str = "pooled"
    successor: tuple[int, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        get_kind(self.kind)  # an unknown kind fails here, naming the kinds there are
        if self.successor and len(self.successor) != self.n_items:
            raise ModelFileError(f"successor map has {len(self.successor)} entries for {self.n_items} items")

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of the parameter arrays, in the order the list holds them (stable per kind)."""
        return get_kind(self.kind).param_names(self.dim, self.history_len)

    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the parameter arrays, in param_names order."""
        head = {"item_emb": (self.n_items, self.dim), "device_emb": (self.n_devices, self.dim),
                "hour_emb": (self.n_hours, self.dim), "out_emb": (self.n_items, self.dim),
                "out_bias": (self.n_items,), "link_w": (N_LINKS, self.history_len), "side_w": (N_SIDE,)}
        head.update(get_kind(self.kind).encoder_shapes(self.dim, self.history_len))
        return [head[n] for n in self.param_names]

    @cached_property
    def successor_array(self) -> np.ndarray:
        """The successor map as an int64 array with one extra -1 slot (index -1 = padding)."""
        succ = np.asarray(self.successor or [-1] * self.n_items, dtype=np.int64)
        return np.append(succ, -1)

    def link_keys(self, hist: np.ndarray) -> np.ndarray:
        """(n, N_LINKS, k) linked item per history slot: [successor of h_j, h_j]; -1 = none."""
        return np.stack([self.successor_array[hist], np.where(hist >= 0, hist, -1)], axis=1)


# side.py's features of a batch: dense (seen, cooc) arrays, or their nonzero entries
SideFeatures = tuple[np.ndarray, np.ndarray] | SparseSide


@dataclass
class Batch:
    """Model inputs: hist (n, k) item_idx oldest first, -1 padded; device, hour, label (n,); the
    side features over the catalog (side.py: seen, co-occurrence, each (n, n_items); or their
    nonzero entries, SparseSide) or None."""

    hist: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    label: np.ndarray | None = None
    side: SideFeatures | None = None


def init_params(spec: ModelSpec, rng: np.random.Generator) -> Params:
    """Small random embeddings, zero bias, link and side weights; the encoder's own initial values."""
    scale = 1.0 / np.sqrt(spec.dim)
    # one draw per array in list order first (so a seed gives `pooled` the values it always had),
    # then the zero-started head arrays and the kind's own encoder values replace theirs
    arrays = {n: rng.normal(0.0, scale, s) for n, s in zip(spec.param_names, spec.shapes(), strict=True)}
    arrays.update({n: np.zeros_like(arrays[n]) for n in ("out_bias", "link_w", "side_w")})
    arrays.update(get_kind(spec.kind).init_encoder(spec.dim, spec.history_len, rng))
    return [arrays[n].astype(np.float32) for n in spec.param_names]


def named(params: Params, spec: ModelSpec) -> dict[str, np.ndarray]:
    """The parameter list as {array name: array}."""
    return dict(zip(spec.param_names, params, strict=True))


def check_params(params: Params, spec: ModelSpec) -> None:
    """Raise ModelFileError when arrays do not match the spec (wrong model or catalog)."""
    got = [tuple(p.shape) for p in params]
    if got != spec.shapes():
        raise ModelFileError(f"parameter shapes {got} do not match {spec}; the model was trained "
                             "for another catalog size, dim, history length or model kind")


def state(params: Params, spec: ModelSpec, batch: Batch) -> np.ndarray:
    """User state (n, dim): the kind's encoding of the history + device + hour embeddings."""
    p = named(params, spec)
    u = get_kind(spec.kind).encode(np, p, batch.hist)
    return u + p["device_emb"][batch.device] + p["hour_emb"][batch.hour]


def add_links(z: np.ndarray, keys: np.ndarray, link_w: np.ndarray) -> None:
    """Add link weight (kind, j) to z[row, keys[row, kind, j]] in place, for every key >= 0."""
    rows = np.arange(len(z))
    for kind in range(keys.shape[1]):
        for j in range(keys.shape[2]):
            col = keys[:, kind, j]
            ok = col >= 0
            z[rows[ok], col[ok]] += link_w[kind, j]


def scores(params: Params, spec: ModelSpec, batch: Batch) -> np.ndarray:
    """Logits (n, n_items) for every catalog item."""
    p = named(params, spec)
    z = state(params, spec, batch) @ p["out_emb"].T
    z += p["out_bias"]
    add_links(z, spec.link_keys(batch.hist), p["link_w"])
    if isinstance(batch.side, SparseSide):
        add_side_sparse(z, batch.side, p["side_w"])
    elif batch.side is not None:
        add_side(z, *batch.side, p["side_w"])
    return z


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, stable for large logits."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# Logits are scored per block of rows: the k argmax passes of the top-k then read a block in
# cache rather than every row's logits from memory. 20,000 rows of 3,000 items (the inference
# benchmark): 1.3x the rows/s of scoring them all at once, and 32 MB of logits instead of
# 240 MB. The replay's batches of 2,000 rows of 3,000 items are one block; of MovieLens'
# 9,742 items, three.
BLOCK_LOGITS = 1 << 23
POP_BLOCK_BYTES = 1 << 20  # pop_top_k's rows per block of argmax passes, in bytes of logits


def row_blocks(n: int, n_items: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of equal size (within a row), at most BLOCK_LOGITS // n_items rows
    (at least 64) each, covering n rows in order."""
    size = max(64, BLOCK_LOGITS // max(n_items, 1))
    count = max(1, -(-n // size))
    cuts = (np.arange(count + 1) * n) // count
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _batches(spec: ModelSpec, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray,
             side: SideFeatures | None) -> list[Batch]:
    """The rows as Batches of row_blocks, their side features sliced alike."""
    device = np.asarray(device_idx, dtype=np.int64)
    hist = np.asarray(hist, dtype=np.int64).reshape(len(device), -1)
    hour = np.asarray(hour, dtype=np.int64)
    bounds = row_blocks(len(device), spec.n_items)
    if isinstance(side, SparseSide):
        sides: list[SideFeatures | None] = list(side.blocks(bounds))
    elif side is not None:
        sides = [(side[0][a:b], side[1][a:b]) for a, b in bounds]
    else:
        sides = [None] * len(bounds)
    return [Batch(hist[a:b], device[a:b], hour[a:b], side=sd) for (a, b), sd in zip(bounds, sides, strict=True)]


def top_k(params: Params, spec: ModelSpec, hist: np.ndarray, device_idx: np.ndarray,
          hour: np.ndarray, k: int, side: SideFeatures | None = None) -> np.ndarray:
    """The k highest-scoring item_idx per row, best first: an (n, k) int array (no softmax: the
    normalizer is a pass of exp over every logit, a third of a prediction's time at 3,000 items)."""
    check_params(params, spec)
    k = min(k, spec.n_items)
    out = [pop_top_k(scores(params, spec, b), k)[0] for b in _batches(spec, hist, device_idx, hour, side)]
    return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)


def top_k_with_probs(params: Params, spec: ModelSpec, hist: np.ndarray, device_idx: np.ndarray,
                     hour: np.ndarray, k: int, side: SideFeatures | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The k best item_idx per row and their softmax probabilities: ((n, k) int, (n, k) float).

    `side`: the rows' side features (SideInfo.dense or .sparse), None = the history window only."""
    check_params(params, spec)
    k = min(k, spec.n_items)
    ids, probs = [], []
    for batch in _batches(spec, hist, device_idx, hour, side):
        z = scores(params, spec, batch)
        best, top = pop_top_k(z, k)
        # Softmax keeps the order, so only the normalizer needs every logit: one in-place pass
        # over the rest (the popped best are -inf in z now) plus the best themselves.
        zmax = top[:, :1].copy()  # the best logit is the row maximum
        z -= zmax
        np.exp(z, out=z)
        e_top = np.exp(top - zmax)
        ids.append(best)
        probs.append(e_top / (z.sum(axis=1, keepdims=True) + e_top.sum(axis=1, keepdims=True)))
    if not ids:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(probs)


def pop_top_k(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest columns, best first, ties to the smaller column, and their values.

    The chosen entries of `z` are set to -inf (k row-wise argmax passes: for the small k of
    prefetching this is ~10x cheaper than an argpartition, which fills an int64 index per logit).
    """
    n = z.shape[0]
    rows = np.arange(n)
    if k > 32:  # past a few dozen passes one partition of the row is cheaper
        part = np.argpartition(-z, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(z, part, axis=1)), axis=1)
        cols = np.take_along_axis(part, order, axis=1).astype(np.int64)
        vals = np.take_along_axis(z, cols, axis=1)
        z[rows[:, None], cols] = -np.inf
        return cols, vals
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=z.dtype)
    # the passes run on blocks of rows small enough to stay in the L2 cache between passes (a
    # 1,747 x 3,000 float32 batch, k=4: 3.6 -> 2.8 ms; 256 x 3,000 float64, k=10: 2.4 -> 1.6 ms)
    step = max(1, POP_BLOCK_BYTES // max(1, z.shape[1] * z.itemsize))
    for a in range(0, n, step):
        block = z[a:a + step]
        at = rows[:block.shape[0]]
        for j in range(k):
            c = np.argmax(block, axis=1)
            cols[a:a + step, j] = c
            vals[a:a + step, j] = block[at, c]
            block[at, c] = -np.inf
    return cols, vals


def save_params(path: str | Path, params: Params, spec: ModelSpec) -> Path:
    """Write arrays + spec (+ the successor map as an int array) to one .npz, atomically, no pickle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_params(params, spec)
    arrays = named(params, spec)
    meta = {k: v for k, v in asdict(spec).items() if k != "successor"}
    succ = np.asarray(spec.successor, dtype=np.int32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, spec=np.array(json.dumps(meta)), successor=succ, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def load_params(path: str | Path) -> tuple[Params, ModelSpec]:
    """Read a model written by save_params (allow_pickle=False); older files get zero link and side
    weights, and files from before model.kind are `pooled`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found; run `edgecache train` first")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["spec"]))
            succ = tuple(int(s) for s in data["successor"]) if "successor" in data.files else ()
            spec = ModelSpec(**meta, successor=succ)
            shapes = dict(zip(spec.param_names, spec.shapes(), strict=True))
            optional = ("link_w", "side_w")  # arrays added after the first model files
            params = [(data[name] if name in data.files or name not in optional else np.zeros(shapes[name]))
                      .astype(np.float32) for name in spec.param_names]
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path} is not an edgecache model file ({e})") from e
    check_params(params, spec)
    return params, spec

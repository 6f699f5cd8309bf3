"""Training objectives of the next-content model in JAX, and the jitted Adam step (optax).

- `full_softmax_loss`: cross-entropy of the full softmax over the catalog (exact, O(n_items) per row).
- `sampled_softmax_loss`: sampled softmax (Jean et al. 2015; TF's sampled_softmax_loss) over the
  true item and one shared set of negatives drawn from a proposal q, with the logQ correction and
  accidental hits removed: O(negatives) per row, an estimate of the full loss's gradient. Training
  uses it; evaluation and prediction always score the whole catalog (numpy, model.py).

Both add l2/2 * |params|^2; the train step adds FedProx's mu/2 * |params - anchor|^2 and takes
gradients with jax.value_and_grad. Shapes are fixed for a whole training call (a short last batch
is padded with zero-weight rows, a negative set to `draws` slots with a mask), so the step compiles
once per process and shape, not per batch. The random draws stay in numpy: same seed, same run.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from edge_nodes.learning.kinds import get_kind
from edge_nodes.learning.model import PARAM_NAMES, Batch, ModelSpec, Params
from edge_nodes.learning.side import SparseSide, features_at

JParams = tuple[jax.Array, ...]


class Layout(NamedTuple):
    """What the traced functions need of a spec, hashable (a static jit argument): the model kind
    and its array names in list order. The successor map is not part of it: links arrive as keys."""

    kind: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, spec: ModelSpec) -> Layout:
        return cls(spec.kind, spec.param_names)


POOLED = Layout("pooled", PARAM_NAMES)


class Rows(NamedTuple):
    """A batch as model inputs: hist (n, k), device, hour, label (n,), link keys (n, 2, k), weight (n,).

    `keys` is ModelSpec.link_keys(hist); a row of weight 0 is padding and counts for nothing.
    `side_true` (n, N_SIDE) and `side_cand` (n, C, N_SIDE) are the side features (side.py) of the
    true item and of the candidates (the negatives' slots, or the whole catalog for the full
    softmax); None when the edge has no side information.
    """

    hist: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    label: np.ndarray
    keys: np.ndarray
    weight: np.ndarray
    side_true: np.ndarray | None = None
    side_cand: np.ndarray | None = None


class Negatives(NamedTuple):
    """A shared negative set in fixed slots: item_idx, log of their expected inclusion (the logQ
    term) and which slots hold a drawn item (the rest are padding, scored -inf)."""

    items: np.ndarray
    log_q: np.ndarray
    mask: np.ndarray


def padded_rows(batch: Batch, spec: ModelSpec, size: int, cand: np.ndarray | None = None,
                weight: np.ndarray | None = None,
                side_feats: tuple[np.ndarray, np.ndarray] | None = None) -> Rows:
    """The batch padded to `size` rows of weight 0 (every batch of a training call has one shape).

    `weight`: the rows' loss weights (recency, mean 1 over the training set), else 1 each.
    `side_feats`: the labels' and candidates' side features already computed (side.at_columns).
    With `batch.side`, the side features of the labels and of the candidate items `cand` (C,)
    (the negatives' slots; None = the whole catalog) are gathered too.
    """
    assert batch.label is not None
    n = len(batch.label)
    pad = size - n
    hist = np.pad(batch.hist, ((0, pad), (0, 0)), constant_values=-1)

    def ints(a: np.ndarray) -> np.ndarray:
        return np.pad(a, (0, pad)).astype(np.int32)

    side_true = side_cand = None
    if side_feats is not None:
        side_true = np.pad(side_feats[0], ((0, pad), (0, 0)))
        side_cand = np.pad(side_feats[1], ((0, pad), (0, 0), (0, 0)))
    elif batch.side is not None:
        if isinstance(batch.side, SparseSide):
            raise TypeError("training rows need dense side features (SideInfo.dense, own event out)")
        seen, cooc = batch.side
        cols = np.arange(spec.n_items) if cand is None else np.asarray(cand, np.int64)
        side_true = np.pad(features_at(seen, cooc, batch.label[:, None])[:, 0], ((0, pad), (0, 0)))
        side_cand = np.pad(features_at(seen, cooc, cols[None, :]), ((0, pad), (0, 0), (0, 0)))
    return Rows(hist.astype(np.int32), ints(batch.device), ints(batch.hour), ints(batch.label),
                spec.link_keys(hist).astype(np.int32),
                np.pad(np.ones(n, np.float32) if weight is None else weight.astype(np.float32), (0, pad)),
                side_true, side_cand)


class NegativeSampler:
    """Draws shared negatives from a proposal q: smoothed label frequency ** power (every item > 0)."""

    def __init__(self, labels: np.ndarray, n_items: int, draws: int, power: float = 0.5) -> None:
        w = (np.bincount(labels, minlength=n_items) + 1.0) ** power
        self.q, self.draws = w / w.sum(), draws
        # log P(item drawn at least once in `draws` draws): the logQ correction of every item
        self.log_q = np.log(-np.expm1(draws * np.log1p(-np.minimum(self.q, 1.0 - 1e-12)))).astype(np.float32)

    def draw(self, rng: np.random.Generator) -> Negatives:
        """`draws` items from q with replacement, deduplicated, in `draws` slots (padding last)."""
        items = np.unique(rng.choice(len(self.q), size=self.draws, p=self.q))
        mask = np.arange(self.draws) < len(items)
        items = np.pad(items, (0, self.draws - len(items)))
        return Negatives(items.astype(np.int32), np.where(mask, self.log_q[items], 0.0).astype(np.float32), mask)


def _state(p: dict[str, jax.Array], r: Rows, lay: Layout) -> jax.Array:
    """User state (n, dim): the kind's encoding of the history + device + hour (model.state)."""
    return get_kind(lay.kind).encode(jnp, p, r.hist) + p["device_emb"][r.device] + p["hour_emb"][r.hour]


def _add_links(z: jax.Array, cols: jax.Array | np.ndarray, link_w: jax.Array) -> jax.Array:
    """z[row, cols[row, kind, j]] + link_w[kind, j] for every col >= 0; repeated columns add up."""
    rows = jnp.arange(z.shape[0])[:, None, None]
    return z.at[rows, jnp.maximum(cols, 0)].add(jnp.where(cols >= 0, link_w, 0.0))


def _mean(row_loss: jax.Array, r: Rows) -> jax.Array:
    """Weighted sum over the batch's real rows (weight > 0) divided by their number: with weights of
    mean 1 over the training set, an epoch weighs every example by its weight, not every batch alike."""
    return (row_loss * r.weight).sum() / jnp.maximum((r.weight > 0).sum(), 1)


def _sq_norm(arrays: JParams) -> jax.Array:
    return sum((jnp.vdot(a, a) for a in arrays), start=jnp.zeros(()))


def full_softmax_loss(p: JParams, r: Rows, l2: float, lay: Layout = POOLED) -> jax.Array:
    """Mean full-softmax cross-entropy of the true items + l2/2 * |params|^2."""
    a = dict(zip(lay.names, p, strict=True))
    z = _add_links(_state(a, r, lay) @ a["out_emb"].T + a["out_bias"], r.keys, a["link_w"])
    if r.side_cand is not None:  # the whole catalog's side features
        z = z + r.side_cand @ a["side_w"]
    true = jnp.take_along_axis(jax.nn.log_softmax(z), r.label[:, None], axis=1)[:, 0]
    return _mean(-true, r) + 0.5 * l2 * _sq_norm(p)


def sampled_softmax_loss(p: JParams, r: Rows, neg: Negatives, log_q: jax.Array, l2: float,
                         lay: Layout = POOLED) -> jax.Array:
    """Mean sampled-softmax cross-entropy over [true item, shared negatives] + l2/2 * |params|^2.

    `log_q` holds log P(item in the negative set) for every item (the true item's correction).
    """
    a = dict(zip(lay.names, p, strict=True))
    out_emb, out_bias, link_w = a["out_emb"], a["out_bias"], a["link_w"]
    n_items, slots = out_emb.shape[0], jnp.arange(neg.items.shape[0])
    # item -> its slot among the negatives, -1 if none; index n_items (= -1, a padded key) stays -1
    col = jnp.full(n_items + 1, -1).at[jnp.where(neg.mask, neg.items, n_items)].set(slots).at[n_items].set(-1)
    u = _state(a, r, lay)
    true_links = (link_w * (r.keys == r.label[:, None, None])).sum(axis=(1, 2))
    z_true = (u * out_emb[r.label]).sum(axis=1) + out_bias[r.label] + true_links - log_q[r.label]
    z_neg = _add_links(u @ out_emb[neg.items].T + (out_bias[neg.items] - neg.log_q), col[r.keys], link_w)
    if r.side_true is not None and r.side_cand is not None:  # side features of the true item, the slots
        z_true = z_true + r.side_true @ a["side_w"]
        z_neg = z_neg + r.side_cand @ a["side_w"]
    # the true item is not its own negative, and padding slots are no item at all
    drop = (slots[None, :] == col[r.label][:, None]) | ~neg.mask[None, :]
    logp = jax.nn.log_softmax(jnp.concatenate([z_true[:, None], jnp.where(drop, -jnp.inf, z_neg)], axis=1))
    return _mean(-logp[:, 0], r) + 0.5 * l2 * _sq_norm(p)


@partial(jax.jit, static_argnames=("lr", "lay"))
def _step(p: JParams, opt_state: optax.OptState, anchor: JParams, r: Rows, neg: Negatives | None,
          log_q: jax.Array | None, l2: float, mu: float, lr: float, lay: Layout
          ) -> tuple[JParams, optax.OptState, jax.Array]:
    """One Adam step on the batch loss (+ FedProx's proximal term); returns the loss without it."""
    def objective(q: JParams) -> tuple[jax.Array, jax.Array]:
        if neg is None:
            loss = full_softmax_loss(q, r, l2, lay)
        else:
            assert log_q is not None, "steps with negatives need the sampler's log_q"
            loss = sampled_softmax_loss(q, r, neg, log_q, l2, lay)
        prox = 0.5 * mu * _sq_norm(tuple(a - b for a, b in zip(q, anchor, strict=True)))
        return loss + prox, loss

    (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(p)
    updates, opt_state = optax.adam(lr).update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss


class Trainer:
    """Adam on one parameter list with jitted steps: numpy arrays in, numpy arrays out.

    `proximal_mu` > 0 pulls towards the starting params (FedProx: the round's global model);
    `log_q` (NegativeSampler.log_q) is needed for steps with negatives; `spec` names the arrays.
    """

    def __init__(self, params: Params, spec: ModelSpec, lr: float, l2: float, proximal_mu: float = 0.0,
                 log_q: np.ndarray | None = None) -> None:
        self.lay = Layout.of(spec)
        self.params: JParams = tuple(jnp.asarray(a) for a in params)
        self.anchor = self.params
        self.lr, self.l2, self.mu = float(lr), float(l2), float(proximal_mu)
        self.opt_state = optax.adam(self.lr).init(self.params)
        self.log_q = None if log_q is None else jnp.asarray(log_q)
        self.losses: list[jax.Array] = []

    def step(self, rows: Rows, neg: Negatives | None = None) -> None:
        """One update on a batch (the full softmax without negatives); queued, not waited for."""
        self.params, self.opt_state, loss = _step(self.params, self.opt_state, self.anchor, rows, neg,
                                                  self.log_q, self.l2, self.mu, lr=self.lr, lay=self.lay)
        self.losses.append(loss)

    def result(self) -> tuple[Params, float]:
        """The params as writable numpy arrays and the mean batch loss (nan without steps)."""
        loss = float(jnp.mean(jnp.stack(self.losses))) if self.losses else float("nan")
        return [np.array(a) for a in self.params], loss

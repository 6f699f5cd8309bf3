"""One edge's learning task: load its own training examples, train locally, evaluate.

An edge reads only `features/examples/edge_id=<its id>/` (docs/internals.md). The held-out
slice is the last `eval_fraction` of the edge's own training period by time, so evaluation
never looks at the test period the replay uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edge_nodes.errors import EdgeDataError
from edge_nodes.learning.model import Batch, ModelSpec, Params, scores
from edge_nodes.learning.side import SideInfo, at_columns

log = logging.getLogger(__name__)
COLUMNS = ("ts", "hist", "device_idx", "hour", "label", "user_id", "user_pos")


@dataclass(frozen=True)
class Examples:
    """Training examples as arrays, in time order; `user` (ids) and `pos` (the label's position in
    the user's history at the edge, `user_pos`) tie each row to the edge's user history."""

    hist: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    label: np.ndarray
    ts: np.ndarray
    user: np.ndarray
    pos: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: np.ndarray | slice) -> Examples:
        return Examples(*(getattr(self, f)[idx] for f in FIELDS))

    def batch(self, idx: np.ndarray | slice, side: SideInfo | None = None, training: bool = False) -> Batch:
        """Model inputs of rows `idx`; with `side`, their side features (own counts out when training)."""
        b = Batch(self.hist[idx], self.device[idx], self.hour[idx], self.label[idx])
        if side is not None:
            b.side = side.dense(b.hist, self.user[idx], self.pos[idx], b.label if training else None,
                                ts_s=self.ts[idx])
        return b

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        """Pool several edges' examples (the centralized baseline), kept in time order."""
        ex = Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))
        return ex.take(np.argsort(ex.ts, kind="stable"))


FIELDS = ("hist", "device", "hour", "label", "ts", "user", "pos")
MIN_BATCH = 32  # TrainSettings.min_steps never shrinks a batch below this


@dataclass(frozen=True)
class TrainSettings:
    """Local training hyperparameters (handed to the edge by the server each round)."""

    epochs: int
    lr: float
    batch_size: int
    l2: float
    proximal_mu: float  # 0 = no proximal term (FedProx only)
    negatives: int      # draws per batch for the sampled softmax; 0 = full softmax
    recency_half_life_days: float  # example weight 0.5 ** (age / half-life); 0 = all equal
    min_steps: int      # an epoch takes at least this many steps (the batch shrinks); 0 = batch_size always

    def batch_for(self, examples: int) -> int:
        """The batch an epoch over `examples` uses: batch_size, or smaller when that would make
        fewer than min_steps steps (ceil(examples / min_steps), at least MIN_BATCH)."""
        if self.min_steps <= 0 or examples >= self.min_steps * self.batch_size:
            return self.batch_size
        return min(self.batch_size, max(MIN_BATCH, -(-examples // self.min_steps)))


def edge_partition(examples_dir: str | Path, edge_id: str) -> Path:
    """The folder holding one edge's training examples."""
    return Path(examples_dir) / f"edge_id={edge_id}"


def load_examples(examples_dir: str | Path, edge_id: str, history_len: int) -> Examples:
    """Read one edge's training examples with pyarrow, sorted by time."""
    part = edge_partition(examples_dir, edge_id)
    if not part.is_dir():
        raise EdgeDataError(f"no training examples for {edge_id} at {part}; run `edgecache features` first")
    table = pq.read_table(part, columns=list(COLUMNS))
    if table.num_rows == 0:
        raise EdgeDataError(f"{part} holds no training examples; the edge saw too few events")
    table = table.sort_by("ts")
    hist_col = table.column("hist").combine_chunks()
    lengths = pc.list_value_length(hist_col).to_numpy(zero_copy_only=False)
    if np.any(lengths != history_len):
        raise EdgeDataError(f"{part}: hist lists must hold exactly {history_len} items "
                            f"(features.history_len), found lengths {sorted(set(lengths.tolist()))[:5]}")
    flat = pc.list_flatten(hist_col).to_numpy(zero_copy_only=False)
    return Examples(
        hist=flat.astype(np.int64).reshape(-1, history_len),
        device=_ints(table, "device_idx"), hour=_ints(table, "hour"), label=_ints(table, "label"),
        ts=pc.cast(table.column("ts"), pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy(),  # seconds
        user=table.column("user_id").to_numpy(zero_copy_only=False).astype(str), pos=_ints(table, "user_pos"),
    )


def _ints(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy().astype(np.int64)


def check_examples(ex: Examples, spec: ModelSpec, where: str) -> None:
    """Fail early with the offending column when examples do not fit the model."""
    limits = {"label": (ex.label, spec.n_items), "hist": (ex.hist, spec.n_items),
              "device_idx": (ex.device, spec.n_devices), "hour": (ex.hour, spec.n_hours)}
    for name, (arr, hi) in limits.items():
        lo = -1 if name == "hist" else 0
        if arr.size and (arr.min() < lo or arr.max() >= hi):
            raise EdgeDataError(f"{where}: {name} values must be in [{lo}, {hi}); found "
                                f"[{arr.min()}, {arr.max()}] — does the catalog size match?")


def split_by_time(ex: Examples, eval_fraction: float) -> tuple[Examples, Examples]:
    """Train on the first part of the period, hold out the last `eval_fraction` by time."""
    n_eval = int(round(len(ex) * eval_fraction))
    if eval_fraction > 0 and len(ex) > 1:
        n_eval = min(max(n_eval, 1), len(ex) - 1)
    cut = len(ex) - n_eval
    return ex.take(slice(0, cut)), ex.take(slice(cut, len(ex)))


def train(params: Params, spec: ModelSpec, ex: Examples, settings: TrainSettings,
          rng: np.random.Generator, side: SideInfo | None = None) -> tuple[Params, float]:
    """Minibatch Adam for `settings.epochs` epochs (jitted JAX steps, objective.py); returns new
    params (inputs untouched) and the mean batch loss.

    Sampled softmax when 0 < negatives < n_items (proposal from this edge's own label counts),
    else the full softmax; FedProx's proximal term pulls towards `params` when proximal_mu > 0.
    `side`: the edge's user histories and co-occurrence table (side.py), None = the window only.
    """
    from edge_nodes.learning import objective  # JAX loads only in the processes that train

    weight = recency_weights(ex.ts, settings.recency_half_life_days)
    sampler = (objective.NegativeSampler(ex.label, spec.n_items, settings.negatives)
               if 0 < settings.negatives < spec.n_items else None)
    trainer = objective.Trainer(params, spec, settings.lr, settings.l2, settings.proximal_mu,
                                None if sampler is None else sampler.log_q)
    batch_size = settings.batch_for(len(ex))
    for _ in range(settings.epochs):
        order = rng.permutation(len(ex))
        for start in range(0, len(ex), batch_size):
            neg = None if sampler is None else sampler.draw(rng)
            idx = order[start:start + batch_size]
            batch = ex.batch(idx)
            feats = None
            if side is not None:  # the labels' and candidates' side features only, not the whole catalog
                cols = np.arange(spec.n_items) if neg is None else neg.items
                feats = at_columns(side, batch.hist, ex.user[idx], ex.pos[idx], ex.label[idx], cols, spec.n_items,
                                   ex.ts[idx])
            rows = objective.padded_rows(batch, spec, batch_size,  # one shape per edge: compiled once
                                         None if neg is None else neg.items,
                                         None if weight is None else weight[idx], feats)
            trainer.step(rows, neg)
    return trainer.result()


def recency_weights(ts: np.ndarray, half_life_days: float) -> np.ndarray | None:
    """0.5 ** (age / half-life) per example, age in days before the newest, scaled to mean 1 (so the
    loss keeps its scale and each batch its share); None when the half-life is 0 (all equal)."""
    if half_life_days <= 0 or ts.size == 0:
        return None
    age_days = (ts.max() - ts).astype(np.float64) / 86_400  # ts in seconds (load_examples)
    w = np.exp2(-age_days / half_life_days)
    return (w / w.mean()).astype(np.float32)


def evaluate(params: Params, spec: ModelSpec, ex: Examples, k: int, batch_size: int = 1024,
             side: SideInfo | None = None) -> dict[str, float]:
    """Cross-entropy, hit@k and NDCG@k of the true next item (one relevant item per row).

    With `side`, a row's own event is left out of its label's co-occurrence count (as in training):
    the table counts the whole training period, held-out slice included."""
    if len(ex) == 0:
        return {"loss": float("nan"), "hit_at_k": 0.0, "ndcg_at_k": 0.0}
    loss_sum = hit_sum = ndcg_sum = 0.0
    for start in range(0, len(ex), batch_size):
        b = ex.batch(slice(start, start + batch_size), side, training=True)
        z = scores(params, spec, b)
        assert b.label is not None
        true = z[np.arange(len(b.label)), b.label]
        rank = np.count_nonzero(z > true[:, None], axis=1)  # items strictly better than the truth
        zmax = z.max(axis=1, keepdims=True)
        z -= zmax  # log-sum-exp in place: the (batch, n_items) logits are the big array here
        np.exp(z, out=z)
        loss_sum += float((np.log(z.sum(axis=1)) + zmax[:, 0] - true).sum())
        hit = rank < k
        hit_sum += float(hit.sum())
        ndcg_sum += float((hit / np.log2(rank + 2.0)).sum())
    n = float(len(ex))
    return {"loss": loss_sum / n, "hit_at_k": hit_sum / n, "ndcg_at_k": ndcg_sum / n}

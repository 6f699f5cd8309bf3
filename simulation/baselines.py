"""Baselines with the same model and training budget as the federated run.

- `local_only`: every edge trains alone on its own examples (no aggregation).
- `centralized`: one model on all edges' training examples pooled — the privacy-violating
  upper bound. Both train for rounds x local_epochs epochs (the passes over each example
  the federated run makes) and are evaluated on each edge's own held-out slice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.settings import ServerSettings
from edge_nodes.client_app import EdgeIdentity
from edge_nodes.model import ModelSpec, Params, init_params, save_params
from edge_nodes.task import Examples, TrainSettings, evaluate, load_examples, split_by_time, train
from monitoring.metrics import EVAL_HIT_RATIO, TRAIN_LOSS

log = logging.getLogger(__name__)
Splits = dict[str, tuple[Examples, Examples]]


def load_splits(edges: tuple[EdgeIdentity, ...], s: ServerSettings) -> Splits:
    """Each edge's (train, held-out) examples, split exactly as the ClientApp splits them."""
    return {e.edge_id: split_by_time(load_examples(e.examples_dir, e.edge_id, s.history_len), s.eval_fraction)
            for e in edges}


def _budget(s: ServerSettings) -> TrainSettings:
    return TrainSettings(epochs=s.rounds * s.local_epochs, lr=s.lr, batch_size=s.batch_size, l2=s.l2)


def weighted_quality(per_edge: dict[str, dict[str, float]], sizes: dict[str, int]) -> dict[str, float]:
    """Example-weighted mean of per-edge metrics (how Flower aggregates the federated ones)."""
    total = sum(sizes.values()) or 1
    keys = ("loss", "hit_at_k", "ndcg_at_k")
    return {k: sum(per_edge[e][k] * sizes[e] for e in per_edge) / total for k in keys}


def _report(name: str, per_edge: dict[str, dict[str, float]], splits: Splits,
            train_loss: float, s: ServerSettings) -> dict[str, Any]:
    sizes = {e: len(splits[e][1]) for e in per_edge}
    overall = weighted_quality(per_edge, sizes)
    TRAIN_LOSS.labels(model=name).set(train_loss)
    EVAL_HIT_RATIO.labels(model=name).set(overall["hit_at_k"])
    return {"train_loss": train_loss, "epochs": _budget(s).epochs, **{f"eval_{k}": v for k, v in overall.items()},
            "per_edge": per_edge}


def train_local_only(splits: Splits, s: ServerSettings, model_dir: Path) -> dict[str, Any]:
    """One model per edge on its own data only; saved as models/local_only/<edge>.npz."""
    spec = ModelSpec(s.n_items, s.dim, s.history_len)
    per_edge: dict[str, dict[str, float]] = {}
    losses = []
    for i, (edge, (fit, held)) in enumerate(sorted(splits.items())):
        rng = np.random.default_rng([s.seed, i, 0])
        params, loss = train(init_params(spec, np.random.default_rng(s.seed)), fit, _budget(s), rng)
        save_params(model_dir / "local_only" / f"{edge}.npz", params, spec)
        per_edge[edge] = evaluate(params, held, s.top_k)
        losses.append(loss)
        log.info("local_only %s: hit@%d %.4f", edge, s.top_k, per_edge[edge]["hit_at_k"])
    return _report("local_only", per_edge, splits, float(np.mean(losses)), s)


def train_centralized(splits: Splits, s: ServerSettings, model_dir: Path) -> dict[str, Any]:
    """One model on all edges' training examples pooled; saved as models/centralized.npz."""
    spec = ModelSpec(s.n_items, s.dim, s.history_len)
    pooled = Examples.concat([fit for fit, _ in splits.values()])
    params: Params = init_params(spec, np.random.default_rng(s.seed))
    params, loss = train(params, pooled, _budget(s), np.random.default_rng([s.seed, 1_000_003]))
    save_params(model_dir / "centralized.npz", params, spec)
    per_edge = {edge: evaluate(params, held, s.top_k) for edge, (_, held) in sorted(splits.items())}
    out = _report("centralized", per_edge, splits, loss, s)
    log.info("centralized: hit@%d %.4f", s.top_k, out["eval_hit_at_k"])
    return out

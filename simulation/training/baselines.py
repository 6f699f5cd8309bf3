"""Baselines with the same model and training budget as the federated run.

- `local_only`: every edge trains alone on its own examples (no aggregation).
- `centralized`: one model on all edges' training examples pooled — the privacy-violating
  upper bound. Both train for rounds x local_epochs epochs (the passes over each example
  the federated run makes) with the same loss, and are evaluated on each edge's own
  held-out slice.

The jobs (one centralized model, one local model per edge) run in a pool of single-threaded
worker processes, as many as there are cores; each worker reads the data it needs itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.settings import ServerSettings
from edge_nodes.learning.client_app import EdgeIdentity
from edge_nodes.learning.cooc_app import cooc_partition, load_cooc
from edge_nodes.learning.cooc_table import ITEMCF_FILE, CoocTable, local_table_path
from edge_nodes.learning.history import UserHistory
from edge_nodes.learning.model import ModelSpec, init_params, save_params
from edge_nodes.learning.side import SideInfo
from edge_nodes.learning.task import Examples, TrainSettings, evaluate, load_examples, split_by_time, train
from simulation.training.workers import single_threaded_workers

log = logging.getLogger(__name__)
Splits = dict[str, tuple[Examples, Examples]]
Quality = dict[str, dict[str, float]]


def load_splits(edges: tuple[EdgeIdentity, ...], s: ServerSettings) -> Splits:
    """Each edge's (train, held-out) examples, split exactly as the ClientApp splits them."""
    return {e.edge_id: split_by_time(load_examples(e.examples_dir, e.edge_id, s.history_len), s.eval_fraction)
            for e in edges}


def _budget(s: ServerSettings) -> TrainSettings:
    return TrainSettings(epochs=s.rounds * s.local_epochs, lr=s.lr, batch_size=s.batch_size, l2=s.l2,
                         proximal_mu=0.0, negatives=s.negatives, recency_half_life_days=s.recency_half_life_days,
                         min_steps=0)  # federated.min_local_steps shapes the federated rounds only


def weighted_quality(per_edge: dict[str, dict[str, float]], sizes: dict[str, int]) -> dict[str, float]:
    """Example-weighted mean of per-edge metrics (how Flower aggregates the federated ones)."""
    total = sum(sizes.values()) or 1
    keys = ("loss", "hit_at_k", "ndcg_at_k")
    return {k: sum(per_edge[e][k] * sizes[e] for e in per_edge) / total for k in keys}


def _report(name: str, per_edge: Quality, sizes: dict[str, int], train_loss: float,
            s: ServerSettings) -> dict[str, Any]:
    overall = weighted_quality(per_edge, sizes)
    log.info("%s: hit@%d %.4f", name, s.top_k, overall["hit_at_k"])
    return {"train_loss": train_loss, "epochs": _budget(s).epochs, **{f"eval_{k}": v for k, v in overall.items()},
            "per_edge": per_edge}


def history_path(edge: EdgeIdentity) -> Path:
    """features/history/edge_id=<id>: beside the edge's examples."""
    return Path(edge.examples_dir).parent / "history" / f"edge_id={edge.edge_id}"


def local_side(edge: EdgeIdentity, s: ServerSettings) -> SideInfo:
    """What a lone edge knows: its own histories and its own co-occurrence counts (none of the
    federation's: the summed table holds other edges' counts)."""
    history = UserHistory.from_table(history_path(edge), s.n_items) if history_path(edge).exists() else None
    part = cooc_partition(edge.examples_dir, edge.edge_id)
    table = (CoocTable.from_coo([load_cooc(part, s.n_items)], s.n_items, s.cooc_window, s.cooc_decay,
                                s.cooc_half_life_days, s.cooc_ref_s)
             if part.exists() else None)
    return SideInfo(history, table)


def pooled_side(edges: tuple[EdgeIdentity, ...], s: ServerSettings, model_dir: Path) -> SideInfo:
    """Every edge's histories (user ids prefixed by edge, as `_pooled_ids` does) and the summed table."""
    parts = [UserHistory.from_table(history_path(e), s.n_items, prefix=f"{e.edge_id}/")
             for e in edges if history_path(e).exists()]
    table_path = model_dir / ITEMCF_FILE
    return SideInfo(UserHistory.merge(parts) if len(parts) == len(edges) else None,
                    CoocTable.load(table_path, s.n_items) if table_path.is_file() else None)


def _pooled_ids(edge_id: str, ex: Examples) -> Examples:
    return replace(ex, user=np.char.add(f"{edge_id}/", ex.user.astype(str)))


def fit_local_only(edge: EdgeIdentity, index: int, s: ServerSettings, spec: ModelSpec,
                   model_dir: Path) -> tuple[dict[str, float], float, int]:
    """One edge alone: train, save models/local_only/<edge>.npz; (quality, train loss, held-out size)."""
    fit, held = load_splits((edge,), s)[edge.edge_id]
    side = local_side(edge, s) if s.side_info else None
    params, loss = train(init_params(spec, np.random.default_rng(s.seed)), spec, fit, _budget(s),
                         np.random.default_rng([s.seed, index, 0]), side)
    path = save_params(model_dir / "local_only" / f"{edge.edge_id}.npz", params, spec)
    if side is not None and side.table is not None:  # the replay serves the model with the counts it trained on
        side.table.base.save(local_table_path(path))
    return evaluate(params, spec, held, s.top_k, side=side), loss, len(held)


def fit_centralized(edges: tuple[EdgeIdentity, ...], s: ServerSettings, spec: ModelSpec,
                    model_dir: Path) -> tuple[Quality, float, dict[str, int]]:
    """All edges' examples pooled: train, save models/centralized.npz; per-edge quality on held-out."""
    splits = {edge: (_pooled_ids(edge, fit), _pooled_ids(edge, held)) for edge, (fit, held) in load_splits(edges, s).items()}
    pooled = Examples.concat([fit for fit, _ in splits.values()])
    side = pooled_side(edges, s, model_dir) if s.side_info else None
    params, loss = train(init_params(spec, np.random.default_rng(s.seed)), spec, pooled, _budget(s),
                         np.random.default_rng([s.seed, 1_000_003]), side)
    save_params(model_dir / "centralized.npz", params, spec)
    per_edge = {edge: evaluate(params, spec, held, s.top_k, side=side) for edge, (_, held) in sorted(splits.items())}
    return per_edge, loss, {edge: len(held) for edge, (_, held) in splits.items()}


def train_baselines(edges: tuple[EdgeIdentity, ...], s: ServerSettings, model_dir: Path,
                    workers: int | None = None) -> dict[str, Any]:
    """local_only and centralized, trained in parallel worker processes; {name: report}."""
    spec = s.model_spec()
    workers = workers or max(1, min(os.cpu_count() or 1, len(edges) + 1))
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: the BLAS thread setting applies
    with single_threaded_workers(), ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        central: Future[Any] = pool.submit(fit_centralized, edges, s, spec, model_dir)
        local = {e.edge_id: pool.submit(fit_local_only, e, i, s, spec, model_dir)
                 for i, e in enumerate(sorted(edges, key=lambda e: e.edge_id))}
        per_edge = {edge: f.result() for edge, f in local.items()}
        c_quality, c_loss, sizes = central.result()
    local_report = _report("local_only", {e: r[0] for e, r in per_edge.items()},
                           {e: r[2] for e, r in per_edge.items()},
                           float(np.mean([r[1] for r in per_edge.values()])), s)
    return {"local_only": local_report, "centralized": _report("centralized", c_quality, sizes, c_loss, s)}

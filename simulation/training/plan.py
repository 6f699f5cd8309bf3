"""Config + run directory -> FederationPlan: the plain values an engine needs.

The server gets `ServerSettings`, each edge an `EdgeIdentity`; neither sees the experiment
config itself (the privacy boundary: an edge is handed its settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from aggregator.settings import ServerSettings
from edge_nodes.learning.client_app import EdgeIdentity
from simulation.config import ExperimentConfig
from simulation.errors import RunDirError, TrainingFailed
from simulation.mirrors import mirror
from simulation.rundir import RunDir
from simulation.span import cut_seconds, time_cut


@dataclass(frozen=True)
class FederationPlan:
    """Everything an engine needs, as plain values."""

    engine: str
    settings: ServerSettings
    edges: tuple[EdgeIdentity, ...]
    workdir: Path


def discover_edges(run: RunDir) -> list[str]:
    """Edge ids that have training examples (features/examples/edge_id=<id>/)."""
    examples = run.require(run.features / "examples", "features")
    edges = sorted(p.name.split("=", 1)[1] for p in examples.glob("edge_id=*") if p.is_dir())
    if not edges:
        raise RunDirError(f"{examples} holds no edge_id=<id> folders; run `edgecache features` first")
    return edges


def catalog_size(cfg: ExperimentConfig, run: RunDir) -> int:
    """Catalog rows (item_idx range): catalog.parquet when present, else workload.items."""
    if run.catalog.is_file():
        return int(pq.ParquetFile(run.catalog).metadata.num_rows)
    return cfg.workload.items


def server_settings(cfg: ExperimentConfig, run: RunDir, n_items: int, num_edges: int) -> ServerSettings:
    """[model], [federated] and [features] onto the server's plain settings (same-named fields, see mirrors.py)."""
    return mirror(ServerSettings, cfg.model, cfg.federated, cfg.features,
                  model_dir=str(run.models.resolve()), n_items=n_items, history_len=cfg.features.history_len,
                  num_edges=num_edges, min_nodes=min(cfg.federated.min_nodes, num_edges),
                  catalog_path=str(run.catalog.resolve()) if run.catalog.is_file() else "",
                  local_layers=",".join(cfg.federated.local_layers), seed=cfg.run.seed,
                  cooc_ref_s=cut_seconds(time_cut(cfg, run)) if cfg.features.cooc_half_life_days > 0 else 0)


def plan_federation(cfg: ExperimentConfig, run: RunDir, n_items: int | None = None) -> FederationPlan:
    """Resolve config + run directory into a FederationPlan."""
    edges = discover_edges(run)
    fail = set(cfg.federated.fail_edges)
    unknown = fail - set(edges)
    if unknown:
        raise TrainingFailed(f"federated.fail_edges names {sorted(unknown)}, not edges of this run "
                             f"({', '.join(edges)})")
    examples = str((run.features / "examples").resolve())
    ids = tuple(EdgeIdentity(e, i, examples, str(run.models.resolve()),
                             tuple(cfg.federated.fail_rounds) if e in fail else ())
                for i, e in enumerate(edges))
    settings = server_settings(cfg, run, n_items or catalog_size(cfg, run), len(edges))
    return FederationPlan(cfg.federated.engine, settings, ids, run.root.resolve())

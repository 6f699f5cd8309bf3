"""Run federated training on a prepared run directory with either Flower engine.

`plan_federation` turns the experiment config and the run directory into plain values
(server settings, one identity per edge); `run_federation` runs the rounds with the
simulation engine (Ray, in this process) or the deployment engine (SuperLink + one
SuperNode per edge, see simulation/deployment.py) and returns what the server recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from aggregator.checkpoint import CheckpointStore
from aggregator.server_app import build_server_app
from aggregator.settings import ServerSettings
from edge_nodes.client_app import EdgeIdentity, PartitionTable, build_client_app
from simulation.config import ExperimentConfig
from simulation.errors import RunDirError, TrainingFailed
from simulation.rundir import RunDir

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
RAY_OBJECT_STORE_BYTES = 256 * 1024 * 1024
# One BLAS thread per worker process: every worker already has its own core, and threads that
# oversubscribe a small (or shared) machine made each matrix product ~10x slower here.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def worker_env() -> dict[str, str]:
    """Thread settings for worker processes; a user's own setting of a variable wins."""
    return {k: os.environ.get(k, v) for k, v in SINGLE_THREAD_ENV.items()}


@contextmanager
def single_threaded_workers() -> Iterator[None]:
    """Processes started inside the block (Ray workers, process pools) get worker_env()."""
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(worker_env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    """Map [model] and [federated] config onto the server's plain settings."""
    m, f = cfg.model, cfg.federated
    return ServerSettings(
        model_dir=str(run.models.resolve()), n_items=n_items, history_len=cfg.features.history_len,
        num_edges=num_edges, dim=m.dim, strategy=f.strategy, rounds=f.rounds,
        fraction_train=f.fraction_train, min_nodes=min(f.min_nodes, num_edges),
        proximal_mu=f.proximal_mu, server_lr=f.server_lr, server_momentum=f.server_momentum,
        trimmed_beta=f.trimmed_beta, byzantine_nodes=f.byzantine_nodes, dp_clip=f.dp_clip,
        dp_noise=f.dp_noise, local_epochs=f.local_epochs, lr=m.lr, batch_size=m.batch_size, l2=m.l2,
        negatives=m.negatives, catalog_path=str(run.catalog.resolve()) if run.catalog.is_file() else "",
        eval_fraction=m.eval_fraction, top_k=m.top_k, personalize_epochs=f.personalize_epochs,
        local_layers=",".join(f.local_layers),
        seed=cfg.run.seed, resume=f.resume, round_timeout_s=f.round_timeout_s,
        connect_timeout_s=f.connect_timeout_s)


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


def _python_path() -> str:
    """PYTHONPATH that makes Ray workers and Flower processes import this checkout first."""
    parts = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def run_simulation_engine(plan: FederationPlan) -> None:
    """Flower's simulation engine: one Ray actor CPU per ClientApp, a small object store."""
    import ray
    from flwr.simulation import run_simulation

    os.environ["PYTHONPATH"] = _python_path()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    cpus = max(1, min(len(plan.edges), os.cpu_count() or 1))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "object_store_memory": RAY_OBJECT_STORE_BYTES,
                             "logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}}
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.WARNING)
    try:
        with single_threaded_workers():
            run_simulation(server_app=build_server_app(lambda _ctx: plan.settings),
                           client_app=build_client_app(PartitionTable(plan.edges)),
                           num_supernodes=len(plan.edges), backend_config=backend)  # type: ignore[arg-type]
    finally:
        flwr_log.setLevel(level)
        if ray.is_initialized():
            ray.shutdown()


def run_federation(plan: FederationPlan) -> dict[str, Any]:
    """Run all rounds with the planned engine; return the server summary plus the round records."""
    store = CheckpointStore(plan.settings.model_dir)
    error: BaseException | None = None
    try:
        if plan.engine == "simulation":
            run_simulation_engine(plan)
        else:
            from simulation.deployment import run_deployment_engine
            run_deployment_engine(plan)
    except Exception as e:  # the server's own record below says more than the engine's wrapper
        error = e
    summary = store.read_summary()
    if error is not None or summary.get("status") != "ok":
        reason = summary.get("error") or (f"{type(error).__name__}: {error}" if error else "no summary written")
        raise TrainingFailed(f"federated training ({plan.engine} engine) failed: {reason}") from error
    summary["rounds"] = store.read_rounds()
    return summary

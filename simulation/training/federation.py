"""Run federated training with either Flower engine.

`run_federation` runs the rounds of a FederationPlan (simulation/training/plan.py) with the
simulation engine (Ray, in this process) or the deployment engine (SuperLink + one SuperNode
per edge, simulation/training/deployment.py) and returns what the server recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from aggregator.checkpoint import CheckpointStore
from aggregator.server_app import build_server_app
from edge_nodes.learning.client_app import PartitionTable, build_client_app
from simulation.errors import TrainingFailed
from simulation.interrupts import Interrupted
from simulation.training.deployment import run_deployment_engine
from simulation.training.plan import FederationPlan
from simulation.training.workers import python_path, single_threaded_workers

log = logging.getLogger(__name__)
RAY_OBJECT_STORE_BYTES = 256 * 1024 * 1024


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Stop ray.init from replacing the process's SIGTERM handler (it installs `sys.exit(signum)`,
    which would bypass the CLI's interruption handling and its exit deadline, simulation/interrupts.py)."""
    try:
        import ray._private.utils as ray_utils
    except ImportError:
        yield
        return
    original = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original


def run_simulation_engine(plan: FederationPlan) -> None:
    """Flower's simulation engine: one Ray actor CPU per ClientApp, a small object store."""
    import ray
    from flwr.simulation import run_simulation

    cpus = max(1, min(len(plan.edges), os.cpu_count() or 1))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "object_store_memory": RAY_OBJECT_STORE_BYTES,
                             "logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}}
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.WARNING)
    try:
        with single_threaded_workers(PYTHONPATH=python_path(), RAY_DEDUP_LOGS=os.environ.get("RAY_DEDUP_LOGS", "1")), \
                keep_sigterm_handler():
            run_simulation(server_app=build_server_app(lambda _ctx: plan.settings),
                           client_app=build_client_app(PartitionTable(plan.edges)),
                           num_supernodes=len(plan.edges), backend_config=backend)  # type: ignore[arg-type]
    finally:
        flwr_log.setLevel(level)
        # Interrupted: no graceful shutdown (it can take many seconds); the CLI kills Ray's processes.
        if ray.is_initialized() and not isinstance(sys.exc_info()[1], Interrupted):
            ray.shutdown()


def run_federation(plan: FederationPlan) -> dict[str, Any]:
    """Run all rounds with the planned engine; return the server summary plus the round records."""
    store = CheckpointStore(plan.settings.model_dir)
    error: BaseException | None = None
    try:
        if plan.engine == "simulation":
            run_simulation_engine(plan)
        else:
            run_deployment_engine(plan)
    except Exception as e:  # the server's own record below says more than the engine's wrapper
        error = e
    summary = store.read_summary()
    if error is not None or summary.get("status") != "ok":
        reason = summary.get("error") or (f"{type(error).__name__}: {error}" if error else "no summary written")
        raise TrainingFailed(f"federated training ({plan.engine} engine) failed: {reason}") from error
    summary["rounds"] = store.read_rounds()
    return summary

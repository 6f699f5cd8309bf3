"""The environment of worker processes: one BLAS and XLA thread each, this checkout importable first.

Ray actors, Flower SuperNode apps and the baseline process pool each already have their own
core; these helpers give every process they start the same thread settings and import path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# One BLAS thread per worker process: every worker already has its own core, and threads that
# oversubscribe a small (or shared) machine made each matrix product ~10x slower here. The JAX
# train step (edge_nodes/learning/objective.py) runs on XLA's CPU backend: single-threaded Eigen
# products, and no probing for accelerators. XLA reads these when jax is first imported, which
# happens only inside the worker processes that train.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "JAX_PLATFORMS": "cpu"}


def worker_env() -> dict[str, str]:
    """Thread settings for worker processes; a user's own setting of a variable wins."""
    return {k: os.environ.get(k, v) for k, v in SINGLE_THREAD_ENV.items()}


@contextmanager
def single_threaded_workers(**extra: str) -> Iterator[None]:
    """Processes started inside the block (Ray workers, process pools) get worker_env() and `extra`.

    The variables are restored after the block, so a caller in a longer-lived process (a test, a
    notebook) is left as it was.
    """
    values = {**worker_env(), **extra}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def python_path() -> str:
    """PYTHONPATH that makes Ray workers and Flower processes import this checkout first."""
    parts = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))

"""Worker processes' environment: one BLAS and XLA thread, and XLA accepts the flags we give it."""

from __future__ import annotations

import os
import subprocess
import sys

from simulation.training.workers import SINGLE_THREAD_ENV, single_threaded_workers, worker_env


def test_a_worker_with_the_worker_env_trains_on_cpu() -> None:
    """XLA aborts the process on a flag it does not know: a jaxlib upgrade must not break workers."""
    code = ("import jax, jax.numpy as jnp; x = jnp.ones((64, 64)); "
            "print(jax.default_backend(), float((x @ x).sum()))")
    env = {**os.environ, **SINGLE_THREAD_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["cpu", str(64.0 ** 3)]


def test_the_users_own_setting_wins_and_is_restored(monkeypatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert worker_env()["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    with single_threaded_workers():
        assert os.environ["JAX_PLATFORMS"] == "cpu"
    assert "JAX_PLATFORMS" not in os.environ

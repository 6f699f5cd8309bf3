"""Shared test fixtures. Real components only: an embedded Redis, real Spark, real Flower.

`require(ok, what, fix)` skips a test whose real component is missing, loudly, outside CI;
under CI=true the same call fails the test, so a missing component can never pass as green.
Area fixtures live in tests/fixtures_<area>.py, registered below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edge_nodes.cache.redis_server import EmbeddedRedis

pytest_plugins = [
    "tests.fixtures_workload",
    "tests.fixtures_spark",
    "tests.fixtures_federated",
    "tests.fixtures_cache",
    "tests.fixtures_monitoring",
    "tests.fixtures_report",
]

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str, fix: str) -> None:
    """Skip (outside CI) or fail (CI=true) when a real component is missing."""
    if ok:
        return
    message = f"REAL COMPONENT MISSING: {what}. Fix: {fix}"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing component fails the suite)")
    pytest.skip(message)


SERVER_NAMES = ("redis-server", "valkey-server", "prometheus", "flower-superlink", "flower-supernode")


@pytest.fixture(scope="session", autouse=True)
def no_orphan_servers() -> Iterator[None]:
    """After the whole session, no server process started by a test may still be running."""
    yield
    me = psutil.Process()
    left = [p for p in me.children(recursive=True)
            if any(n in " ".join(_cmdline(p)) for n in SERVER_NAMES)]
    if left:
        names = ", ".join(f"{p.pid}:{p.name()}" for p in left)
        for p in left:
            p.kill()
        pytest.fail(f"server processes left behind by the tests: {names}")


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One embedded Redis for the whole session (tests flush the databases they use)."""
    with EmbeddedRedis(databases=16) as server:
        yield server.url

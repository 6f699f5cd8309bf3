"""Shared test fixtures. Real components only: an embedded Redis, real Spark, real Flower.

`require(ok, what, fix)` skips a test whose real component is missing, loudly, outside CI;
under CI=true the same call fails the test, so a missing component can never pass as green.
Area fixtures live in tests/fixtures_<area>.py, registered below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_nodes.redis_server import EmbeddedRedis

pytest_plugins = [
    "tests.fixtures_workload",
    "tests.fixtures_spark",
    "tests.fixtures_federated",
    "tests.fixtures_cache",
    "tests.fixtures_monitoring",
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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One embedded Redis for the whole session (tests flush the databases they use)."""
    with EmbeddedRedis(databases=16) as server:
        yield server.url

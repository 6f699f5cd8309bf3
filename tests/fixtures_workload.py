"""Fixtures for the workload tests (registered in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulation.config import ExperimentConfig, build_config
from simulation.rundir import RunDir

TINY = {"edges": 3, "users": 60, "items": 120, "events": 3000, "days": 4, "chunk_events": 1000,
        "dirty_fraction": 0.0}


def tiny_config(seed: int = 7, test_days: int = 1, **workload: Any) -> ExperimentConfig:
    """A workload small enough to generate in well under a second."""
    return build_config({"run": {"seed": seed}, "workload": {**TINY, **workload},
                         "split": {"test_days": test_days}, "cache": {"capacity": 10}})


def generate_tiny(root: Path, seed: int = 7, **workload: Any) -> dict[str, Any]:
    """Generate a tiny workload into `root`; return the stage's summary."""
    from simulation.workload.generate import generate

    return generate(tiny_config(seed=seed, **workload), RunDir(root))


def read_lines(root: Path, edge: str) -> list[str]:
    """All lines of one edge, parts in order."""
    parts = sorted((root / "logs" / f"edge={edge}").glob("part-*.jsonl"))
    return [line for p in parts for line in p.read_text().splitlines()]


def read_events(root: Path, edge: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(root, edge)]


@pytest.fixture
def tiny_run(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """Factory: tiny_run(name, **workload) -> (run root, summary)."""
    def make(name: str = "run", seed: int = 7, **workload: Any) -> tuple[Path, dict[str, Any]]:
        root = tmp_path / name
        return root, generate_tiny(root, seed=seed, **workload)
    return make


def ingest_in_chunks_and_whole(tmp_path: Path, folder: Callable[[Path], Path], chunk_lines: int,
                               monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(one chunk, chunks of `chunk_lines`) ingests of the MovieLens folder `folder(path)` makes:
    each its summary, quarantine rows and events per edge (same folder name, so same summary)."""
    from simulation.workload import movielens_latest
    from simulation.workload.ingest import ingest

    def run(name: str) -> tuple[Any, ...]:
        (tmp_path / name).mkdir()
        out = tmp_path / name / "out"
        s = ingest(folder(tmp_path / name / "ml"), "movielens", out, n_edges=4)
        quarantine = (out / "quarantine" / "ingest" / "part-00000.jsonl").read_text().splitlines()
        return s, [json.loads(x) for x in quarantine], {e: read_events(out, e) for e in s["events_per_edge"]}

    whole = run("whole")
    monkeypatch.setattr(movielens_latest, "CHUNK_LINES", chunk_lines)
    return whole, run("chunked")

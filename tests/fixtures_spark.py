"""Fixtures for the spark tests (registered in tests/conftest.py).

`spark`: one SparkSession for the whole test session (local[2], 2 shuffle partitions, no UI).
`TinyRun`: writes a run directory by the generate contract (catalog.parquet and
logs/edge=<id>/part-*.jsonl), with dirty rows of every kind, and remembers what it wrote, so
tests can check the feature job against numbers computed here by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def content_id(i: int) -> str:
    return f"C{i:05d}"


def write_catalog(root: Path, items: int) -> Path:
    """A catalog of `items` titles; item_idx = row number, content_id = C<idx>."""
    table = pa.table({
        "content_id": [content_id(i) for i in range(items)],
        "item_idx": pa.array(range(items), pa.int32()),
        "title": [f"title {i}" for i in range(items)],
        "genre": ["drama"] * items,
        "runtime_min": pa.array([90] * items, pa.int32()),
        "size_mb": [100.0 + i for i in range(items)],
    })
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "catalog.parquet")
    return root / "catalog.parquet"


def event(user: str, item: int, ts: str, edge: str, device: str = "TV", duration: Any = 30) -> dict[str, Any]:
    """One event as the generator writes it."""
    return {"user_id": user, "device": device, "content_id": content_id(item), "duration": duration,
            "timestamp": ts, "edge_id": edge}


def dirty_rows(edge: str, ts: str = "2025-04-02 10:00:00") -> list[tuple[str, str]]:
    """(line, expected reason) for every kind of bad row the job must quarantine."""
    def line(**changes: Any) -> str:
        e = event("U900", 1, ts, edge)
        e.update(changes)
        return json.dumps({k: v for k, v in e.items() if v is not KeyError})
    return [
        ('{"user_id": "U900", "device": "TV", "content_', "unparseable"),
        ("this is not json", "unparseable"),
        ("[1, 2, 3]", "unparseable"),
        ("", "unparseable"),  # a blank line is a row too
        (line(duration=KeyError), "missing_field"),
        (line(user_id=""), "missing_field"),
        (line(content_id=None), "missing_field"),
        (line(timestamp="2025-13-45 99:00:00"), "bad_timestamp"),
        (line(timestamp="yesterday"), "bad_timestamp"),
        (line(duration="abc"), "bad_duration"),
        (line(duration=-5), "negative_duration"),
        (line(duration=100000), "absurd_duration"),
        (line(duration="NaN"), "absurd_duration"),
        (line(device="toaster"), "unknown_device"),
        (line(content_id="C99999"), "unknown_content"),
        (line(edge_id="edge-99"), "edge_mismatch"),
    ]


@dataclass
class EdgeLog:
    lines: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    dirty: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, line, reason)
    valid: list[dict[str, Any]] = field(default_factory=list)  # kept events, in log order


@dataclass
class TinyRun:
    """A run directory under construction; `write()` puts the logs on disk."""
    root: Path
    items: int = 20
    edges: dict[str, EdgeLog] = field(default_factory=dict)

    def add(self, edge: str, e: dict[str, Any]) -> None:
        log = self.edges.setdefault(edge, EdgeLog())
        log.lines.append(json.dumps(e))
        log.valid.append(e)

    def add_dirty(self, edge: str, line: str, reason: str) -> None:
        log = self.edges.setdefault(edge, EdgeLog())
        log.dirty.append((len(log.lines), line, reason))
        log.lines.append(line)
        log.reasons[reason] += 1

    def add_duplicate(self, edge: str, index: int) -> None:
        """Append an exact copy of the edge's index-th valid line (the copy is quarantined)."""
        self.add_dirty(edge, json.dumps(self.edges[edge].valid[index]), "duplicate")

    def write(self, parts: int = 1) -> Path:
        write_catalog(self.root, self.items)
        for edge, log in self.edges.items():
            folder = self.root / "logs" / f"edge={edge}"
            folder.mkdir(parents=True, exist_ok=True)
            size = -(-len(log.lines) // parts)
            for p in range(parts):
                chunk = log.lines[p * size:(p + 1) * size]
                (folder / f"part-{p:05d}.jsonl").write_text("".join(f"{x}\n" for x in chunk))
        return self.root


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The session-wide SparkSession: started once, small and quiet."""
    from spark_features.errors import JavaNotFoundError
    from spark_features.session import check_java, get_spark
    from tests.conftest import require

    try:
        check_java()
        ok, why = True, ""
    except JavaNotFoundError as e:
        ok, why = False, str(e)
    require(ok, f"Java 17/21 for Spark ({why})", "apt-get install openjdk-17-jre-headless")
    session = get_spark(master="local[2]", shuffle_partitions=2, driver_memory="1g", app_name="edgecache-tests")
    yield session
    session.stop()

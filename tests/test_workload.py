"""The generator: file contracts, determinism, chunked writing and the behaviour knobs."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from edge_nodes.devices import DEVICES
from tests.fixtures_workload import read_events, read_lines

STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
EVENT_KEYS = ["user_id", "device", "content_id", "duration", "timestamp", "edge_id"]
CATALOG_COLUMNS = ["content_id", "item_idx", "title", "genre", "kind", "series_id", "season", "episode",
                   "runtime_min", "size_mb", "release_day"]


def _edges(root: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in (root / "logs").glob("edge=*"))


def test_events_follow_the_schema_and_time_order(tiny_run) -> None:
    root, summary = tiny_run()
    catalog = pq.read_table(root / "catalog.parquet")
    ids = set(catalog.column("content_id").to_pylist())
    users = set(pq.read_table(root / "users.parquet").column("user_id").to_pylist())
    total = 0
    for edge in _edges(root):
        events = read_events(root, edge)
        total += len(events)
        for ev in events:
            assert list(ev) == EVENT_KEYS
            assert ev["edge_id"] == edge and ev["device"] in DEVICES
            assert ev["content_id"] in ids and ev["user_id"] in users
            assert isinstance(ev["duration"], int) and ev["duration"] >= 1
            assert STAMP.fullmatch(ev["timestamp"])
        stamps = [ev["timestamp"] for ev in events]
        assert stamps == sorted(stamps), f"{edge} is not in time order across its parts"
        assert stamps[0] >= "2025-04-01 00:00:00" and stamps[-1] < "2025-04-05 00:00:00"
    assert total == summary["events"] == 3000
    assert _edges(root) == ["edge-00", "edge-01", "edge-02"]


def test_catalog_and_users_follow_the_contract(tiny_run) -> None:
    root, _ = tiny_run()
    cat = pq.read_table(root / "catalog.parquet")
    assert cat.column_names == CATALOG_COLUMNS
    assert cat.column("item_idx").to_pylist() == list(range(120))
    assert cat.column("content_id").to_pylist()[:2] == ["C00001", "C00002"]
    rows = cat.to_pylist()
    for r in rows:
        assert (r["kind"] == "episode") == (r["series_id"] is not None) == (r["episode"] is not None)
        assert r["runtime_min"] > 0 and r["size_mb"] > 0
    # episodes of a series are contiguous and in (season, episode) order
    eps = [(r["series_id"], r["season"], r["episode"]) for r in rows if r["kind"] == "episode"]
    for (s1, a1, e1), (s2, a2, e2) in zip(eps, eps[1:], strict=False):
        if s1 == s2:
            assert (a2, e2) > (a1, e1)
    users = pq.read_table(root / "users.parquet")
    assert users.column_names == ["user_id", "name", "home_edge", "age", "preferred_device", "top_genre"]
    assert set(users.column("home_edge").to_pylist()) <= {"edge-00", "edge-01", "edge-02"}
    assert users.column("user_id").to_pylist()[0] == "U000001"


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tiny_run) -> None:
    a, _ = tiny_run("a", dirty_fraction=0.05)
    b, _ = tiny_run("b", dirty_fraction=0.05)
    c, _ = tiny_run("c", seed=8, dirty_fraction=0.05)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_chunked_writing_makes_several_time_ordered_parts_with_exact_counts(tiny_run) -> None:
    root, summary = tiny_run(events=5000, chunk_events=1000)
    parts = sorted((root / "logs").rglob("part-*.jsonl"))
    assert summary["parts"] == len(parts) > len(_edges(root))
    assert sum(len(p.read_text().splitlines()) for p in parts) == 5000
    one, single = tiny_run("one", events=5000, chunk_events=100_000)
    assert single["parts"] == len(_edges(one))
    assert single["events"] == 5000


def test_plan_chunks_bounds_every_chunk() -> None:
    from simulation.workload.events import hour_weights, plan_chunks

    chunks = plan_chunks(10_000, hour_weights(5, 0), 1500, np.random.default_rng(0))
    sizes = [int(c[2].sum()) for c in chunks]
    assert sum(sizes) == 10_000 and max(sizes) <= 1500
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))


def test_noniid_alpha_controls_edge_divergence(tiny_run) -> None:
    jsd = [tiny_run(f"a{a}", noniid_alpha=a, events=6000)[1]["mean_pairwise_jsd"] for a in (0.05, 1.0, 100.0)]
    assert jsd[0] > jsd[1] > jsd[2]


def test_binge_prob_controls_sequential_continuations(tiny_run) -> None:
    share = [tiny_run(f"b{b}", binge_prob=b)[1]["continuation_share"] for b in (0.0, 0.3, 0.9)]
    assert share[0] == 0.0
    assert share[0] < share[1] < share[2]


def test_binge_continuations_are_next_episodes_in_the_logs(tiny_run) -> None:
    root, summary = tiny_run(binge_prob=0.9)
    cat = pq.read_table(root / "catalog.parquet").to_pylist()
    idx = {r["content_id"]: r for r in cat}
    nxt = 0
    for edge in _edges(root):
        by_user: dict[str, list[str]] = {}
        for ev in read_events(root, edge):
            by_user.setdefault(ev["user_id"], []).append(ev["content_id"])
        for seq in by_user.values():
            for a, b in zip(seq, seq[1:], strict=False):
                ra, rb = idx[a], idx[b]
                nxt += ra["series_id"] is not None and ra["series_id"] == rb["series_id"] and \
                    rb["item_idx"] == ra["item_idx"] + 1
    # the chain follows time order; only sessions spilling over a chunk boundary may reorder
    expected = summary["continuation_share"] * summary["events"]
    assert 0.95 * expected <= nxt <= 1.05 * expected


def _classify(line: str, ids: set[str], previous: str | None) -> str | None:
    """Which dirty kind a line is (None = clean), judged from the line alone."""
    if line == previous:
        return "duplicate"
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return "broken_json"
    if sorted(ev) != sorted(EVENT_KEYS):
        return "missing_field"
    if isinstance(ev["duration"], str):
        return "non_numeric_duration"
    if ev["duration"] < 0:
        return "negative_duration"
    if ev["device"] not in DEVICES:
        return "unknown_device"
    try:
        datetime.datetime.strptime(ev["timestamp"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "bad_timestamp"
    return None if ev["content_id"] in ids else "unknown_content"


def test_dirty_rows_are_counted_exactly_by_kind_and_edge(tiny_run) -> None:
    root, summary = tiny_run(dirty_fraction=0.1)
    injected = summary["dirty_injected"]
    assert injected["total"] == 300 and summary["lines"] == 3300 and summary["events"] == 3000
    assert sum(injected["by_kind"].values()) == 300
    assert min(injected["by_kind"].values()) >= 300 // 8
    ids = set(pq.read_table(root / "catalog.parquet").column("content_id").to_pylist())
    for edge in _edges(root):
        found: dict[str, int] = {}
        previous = None
        for line in read_lines(root, edge):
            kind = _classify(line, ids, previous)
            if kind:
                found[kind] = found.get(kind, 0) + 1
            previous = line
        assert found == injected["per_edge"].get(edge, {}), edge


def test_parquet_format_writes_typed_parts(tiny_run) -> None:
    root, summary = tiny_run(format="parquet", dirty_fraction=0.1)
    table = pq.read_table(root / "logs" / "edge=edge-00")
    assert table.column_names[:6] == EVENT_KEYS
    assert str(table.schema.field("duration").type) == "int64"
    total = sum(pq.read_metadata(p).num_rows for p in (root / "logs").rglob("*.parquet"))
    assert total == summary["lines"] == 3300
    assert set(summary["dirty_injected"]["by_kind"]) == {
        "missing_field", "negative_duration", "unknown_device", "bad_timestamp", "unknown_content", "duplicate"}


def test_generate_stage_returns_the_results_json_block(tmp_path: Path) -> None:
    from rich.console import Console

    from simulation.pipeline import StageContext, run_stage
    from simulation.rundir import RunDir
    from tests.fixtures_workload import tiny_config

    ctx = StageContext(cfg=tiny_config(), run=RunDir(tmp_path).create(), console=Console(quiet=True))
    run_stage("generate", ctx)
    w = json.loads((tmp_path / "results.json").read_text())["workload"]
    for key in ("events", "users", "items", "edges", "train_events", "test_events", "dirty_injected",
                "mean_pairwise_jsd", "continuation_share", "zipf_exponent", "top1pct_share"):
        assert key in w
    assert w["train_events"] + w["test_events"] == w["events"] == 3000
    assert (w["users"], w["items"], w["edges"]) == (60, 120, 3)


@pytest.mark.slow
def test_workload_is_learnable(tmp_path: Path) -> None:
    """A first-order next-item predictor beats global popularity at hit@10 on held-out days."""
    from simulation.workload.learnability import evaluate_run
    from tests.fixtures_workload import generate_tiny

    generate_tiny(tmp_path, edges=4, users=500, items=600, events=60_000, days=10, chunk_events=20_000)
    res = evaluate_run(tmp_path, "2025-04-01", train_days=7)
    assert res["markov_hit"] > res["popularity_hit"] + 0.1

"""The feature job on a hand-computed tiny log: reconciliation, time split, tables, markov_sql."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from spark_features.job import FeatureSettings, run_features
from spark_features.predictor import load_markov
from tests.fixtures_spark import TinyRun, content_id, dirty_rows, event

pytestmark = pytest.mark.slow

CUT = "2025-04-05 00:00:00"
E0, E1 = "edge-00", "edge-01"
# edge-00, in log order: (user, item, timestamp, device). Items 15..17 appear only after the cut.
EDGE0 = [
    ("U1", 1, "2025-04-01 10:00:00", "TV"), ("U2", 1, "2025-04-01 10:00:00", "TV"),
    ("U1", 2, "2025-04-01 10:20:00", "mobile"), ("U1", 3, "2025-04-01 10:40:00", "TV"),
    ("U1", 1, "2025-04-02 20:00:00", "web"), ("U1", 2, "2025-04-02 20:10:00", "web"),
    ("U2", 2, "2025-04-03 08:00:00", "TV"), ("U2", 4, "2025-04-03 08:00:00", "TV"),
    ("U2", 2, "2025-04-04 23:59:59", "TV"), ("U2", 16, "2025-04-05 00:00:00", "TV"),
    ("U1", 15, "2025-04-05 09:00:00", "TV"), ("U1", 2, "2025-04-05 09:30:00", "TV"),
    ("U3", 17, "2025-04-06 12:00:00", "TV"),
]
EDGE1 = [("U5", 5, "2025-04-01 09:00:00", "TV"), ("U5", 6, "2025-04-01 09:10:00", "TV"),
         ("U5", 5, "2025-04-02 09:00:00", "TV"), ("U5", 7, "2025-04-06 09:00:00", "TV")]


def build(root: Path, edge1: list[tuple[str, int, str, str]] = EDGE1) -> TinyRun:
    """edge-00 and edge-01 with every kind of dirty row and duplicates (one pre-, one post-cut)."""
    run = TinyRun(root)
    for edge, rows in ((E0, EDGE0), (E1, edge1)):
        for user, item, ts, device in rows:
            run.add(edge, event(user, item, ts, edge, device))
        for line, reason in dirty_rows(edge):
            run.add_dirty(edge, line, reason)
    run.add_duplicate(E0, 6)
    run.add_duplicate(E0, 10)
    run.add_duplicate(E1, 0)
    run.write(parts=2)
    return run


def settings(root: Path) -> FeatureSettings:
    return FeatureSettings(run_dir=root, cut=CUT, history_len=3, session_gap_min=30, half_life_days=2.0,
                           markov_top_n=2, cooc_window=2, cooc_decay=0.5)


@pytest.fixture(scope="module")
def job(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyRun, dict[str, Any]]:
    run = build(tmp_path_factory.mktemp("tiny"))
    return run, run_features(spark, settings(run.root))


def rows(root: Path, table: str, edge: str) -> list[dict[str, Any]]:
    return pq.read_table(root / "features" / table / f"edge_id={edge}").to_pylist()


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_counts_reconcile_exactly_per_edge(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, report = job
    for edge, log in run.edges.items():
        e = report["edges"][edge]
        assert e["input"] == len(log.lines) == e["valid"] + e["quarantined"]
        assert e["valid"] == len(log.valid) and e["by_reason"] == dict(log.reasons)
        assert e["test"] == sum(ev["timestamp"] >= CUT for ev in log.valid)
        assert e["train"] == e["valid"] - e["test"]
        q = pq.read_table(run.root / "quarantine" / f"edge_id={edge}").to_pylist()
        # Every rejected line, at its position in the log, with its reason; the later copy of a
        # duplicate is the one quarantined.
        assert sorted((r["seq"], r["raw"], r["reason"]) for r in q) == sorted(log.dirty)
    total = sum(sum(log.reasons.values()) for log in run.edges.values())
    assert report["quarantined"]["total"] == total
    assert report["quarantined"]["per_edge"] == {e: sum(log.reasons.values()) for e, log in run.edges.items()}


def test_test_stream_is_exactly_the_valid_post_cut_events(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    test = pq.read_table(run.root / "test" / f"edge_id={E0}").to_pylist()
    assert [(r["user_id"], r["item_idx"], r["ts"], r["seq"]) for r in test] == [
        ("U2", 16, ts("2025-04-05 00:00:00"), 9), ("U1", 15, ts("2025-04-05 09:00:00"), 10),
        ("U1", 2, ts("2025-04-05 09:30:00"), 11), ("U3", 17, ts("2025-04-06 12:00:00"), 12)]
    assert test[0]["content_id"] == content_id(16) and test[0]["size_mb"] == 116.0
    assert test[0]["device"] == "TV" and test[0]["duration"] == 30.0


def test_no_feature_uses_an_event_at_or_after_the_cut(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    post_cut_items = {15, 16, 17, 7}
    for edge in (E0, E1):
        ex = rows(run.root, "examples", edge)
        assert ex and all(r["ts"] < ts(CUT) for r in ex)
        seen = {r["label"] for r in ex} | {i for r in ex for i in r["hist"]}
        seen |= {i for r in rows(run.root, "user_state", edge) for i in r["hist"]}
        seen |= {r["item_idx"] for r in rows(run.root, "popularity", edge)}
        seen |= {r[c] for r in rows(run.root, "transitions", edge) for c in ("prev_idx", "next_idx")}
        seen |= {r[c] for r in rows(run.root, "markov", edge) for c in ("prev_idx", "next_idx")}
        seen |= {r[c] for r in rows(run.root, "cooc", edge) for c in ("prev_idx", "next_idx")}
        assert not seen & post_cut_items
        assert all(r["last_ts"] < ts(CUT) for r in rows(run.root, "user_stats", edge))
    assert "U3" not in {r["user_id"] for r in rows(run.root, "user_state", E0)}


def test_transitions_match_the_hand_count(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    got = {(r["prev_idx"], r["next_idx"]): r["count"] for r in rows(run.root, "transitions", E0)}
    # U1: 1>2 2>3 3>1 1>2 ; U2: 1>2 2>4 4>2 (the 08:00 tie is ordered by log position)
    assert got == {(1, 2): 3, (2, 3): 1, (3, 1): 1, (2, 4): 1, (4, 2): 1}
    assert {(r["prev_idx"], r["next_idx"]): r["count"] for r in rows(run.root, "transitions", E1)} == {
        (5, 6): 1, (6, 5): 1}


def test_the_replay_ranks_markov_sql_from_the_counts_as_spark_sql_does(job: tuple[TinyRun, dict[str, Any]]) -> None:
    """TransitionCounts.ranked (the calibration's held-out view re-ranks with it) is MARKOV_SQL."""
    import numpy as np

    from edge_nodes.learning.predictors import MarkovPredictor, PopularityPredictor

    run, _ = job
    items = 1 + max(r["item_idx"] for r in pq.read_table(run.root / "catalog.parquet").to_pylist())
    for edge in (E0, E1):
        part = f"edge_id={edge}"
        pop = PopularityPredictor.from_table(run.root / "features" / "popularity" / part, items)
        spark = MarkovPredictor.from_table(run.root / "features" / "markov" / part, items, pop).with_counts(
            run.root / "features" / "transitions" / part, run.root / "features" / "popularity" / part)
        assert spark.counts is not None
        table, probs = spark.counts.ranked(spark.table.shape[1])
        np.testing.assert_array_equal(table, spark.table)
        np.testing.assert_allclose(probs, spark.probs, rtol=1e-12)


# edge-00's train events per user (history table below): U1 1 2 3 1 2, U2 1 2 4 2. Window 2, decay
# 0.5: each event counts its previous item with weight 1 and the one before with weight 0.5.
DIRECTED_COOC_E0 = {(1, 2): 3.0, (2, 3): 1.0, (1, 3): 0.5, (3, 1): 1.0, (2, 1): 0.5, (3, 2): 0.5,
                    (2, 4): 1.0, (1, 4): 0.5, (4, 2): 1.0, (2, 2): 0.5}


def test_cooc_counts_match_the_hand_count(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    got = {(r["prev_idx"], r["next_idx"]): r["count"] for r in rows(run.root, "cooc", E0)}
    assert got == DIRECTED_COOC_E0
    # edge-01: U5 5 6 5 (train) -> 5>6 1, 6>5 1, 5>5 0.5
    assert {(r["prev_idx"], r["next_idx"]): r["count"] for r in rows(run.root, "cooc", E1)} == {
        (5, 6): 1.0, (6, 5): 1.0, (5, 5): 0.5}


def test_symmetric_cooc_adds_the_reverse_pairs(spark: Any) -> None:
    from spark_features.cooc import cooc

    events = [("U1", i, p) for p, i in enumerate((1, 2, 3, 1, 2))] + [("U2", i, p) for p, i in enumerate((1, 2, 4, 2))]
    seqd = spark.createDataFrame(
        [(E0, u, ts(f"2025-04-01 10:{p:02d}:00"), p, E0, i) for u, i, p in events],
        "edge_id string, user_id string, ts timestamp, seq long, origin string, item_idx int")
    got = {(r.prev_idx, r.next_idx): r["count"] for r in cooc(seqd, 2, 0.5, symmetric=True).collect()}
    pairs = set(DIRECTED_COOC_E0) | {(b, a) for a, b in DIRECTED_COOC_E0}
    assert got == {(a, b): DIRECTED_COOC_E0.get((a, b), 0.0) + DIRECTED_COOC_E0.get((b, a), 0.0)
                   for a, b in pairs}
    assert got[(2, 2)] == 1.0 and got[(1, 2)] == got[(2, 1)] == 3.5


def test_aged_cooc_weighs_each_pair_by_its_later_events_age_at_the_cut(spark: Any) -> None:
    from spark_features.cooc import cooc

    # U1 watches 1, 2, 3 on days 1, 2, 3 before the cut (day 4): 1>2 at 2 days, 2>3 and 1>3 at 1 day.
    seqd = spark.createDataFrame(
        [(E0, "U1", ts(f"2025-04-0{d} 00:00:00"), d, E0, i) for d, i in ((1, 1), (2, 2), (3, 3))],
        "edge_id string, user_id string, ts timestamp, seq long, origin string, item_idx int")
    got = {(r.prev_idx, r.next_idx): r["count"]
           for r in cooc(seqd, 2, 0.5, False, "2025-04-04 00:00:00", half_life_days=1.0).collect()}
    assert got == pytest.approx({(1, 2): 0.25, (2, 3): 0.5, (1, 3): 0.5 * 0.5})


def test_examples_and_user_state_match_the_hand_log(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    got = [(r["user_id"], r["hist"], r["device_idx"], r["hour"], r["dow"], r["label"])
           for r in rows(run.root, "examples", E0)]
    assert got == [  # 2025-04-01 is a Tuesday: dow 1 (Monday = 0)
        ("U1", [-1, -1, 1], 1, 10, 1, 2), ("U1", [-1, 1, 2], 0, 10, 1, 3),
        ("U1", [1, 2, 3], 3, 20, 2, 1), ("U1", [2, 3, 1], 3, 20, 2, 2),
        ("U2", [-1, -1, 1], 0, 8, 3, 2), ("U2", [-1, 1, 2], 0, 8, 3, 4),
        ("U2", [1, 2, 4], 0, 23, 4, 2)]
    state = {r["user_id"]: (r["hist"], r["last_ts"]) for r in rows(run.root, "user_state", E0)}
    assert state == {"U1": ([3, 1, 2], ts("2025-04-02 20:10:00")),
                     "U2": ([2, 4, 2], ts("2025-04-04 23:59:59"))}


def test_sessions_stats_and_popularity(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    sessions = [(r["user_id"], r["session_idx"], r["events"]) for r in rows(run.root, "sessions", E0)]
    assert sessions == [("U1", 0, 3), ("U1", 1, 2), ("U2", 0, 1), ("U2", 1, 2), ("U2", 2, 1)]
    stats = {r["user_id"]: r for r in rows(run.root, "user_stats", E0)}
    assert (stats["U1"]["events"], stats["U1"]["distinct_items"], stats["U1"]["sessions"]) == (5, 3, 2)
    assert stats["U2"]["active_days"] == 3 and stats["U2"]["minutes"] == 120.0
    assert stats["U1"]["events_per_day"] == pytest.approx(5 / (3 + 14 / 24))
    pop = {r["item_idx"]: r for r in rows(run.root, "popularity", E0)}
    assert {i: r["count"] for i, r in pop.items()} == {1: 3, 2: 4, 3: 1, 4: 1}
    # half-life 2 days: a view 2 days before the cut weighs 1/2; item 3 was watched 3d 13h20m before.
    assert pop[3]["recency_score"] == pytest.approx(0.5 ** ((3 + 13 / 24 + 20 / 1440) / 2))


def test_markov_sql_predictions(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    got = {(r["prev_idx"], r["rank"]): (r["next_idx"], r["source"], round(r["prob"], 4))
           for r in rows(run.root, "markov", E0)}
    assert got == {
        (1, 1): (2, "transition", 1.0), (1, 2): (1, "popularity", round(3 / 9, 4)),
        (2, 1): (3, "transition", 0.5), (2, 2): (4, "transition", 0.5),
        (3, 1): (1, "transition", 1.0), (3, 2): (2, "popularity", round(4 / 9, 4)),
        (4, 1): (2, "transition", 1.0), (4, 2): (1, "popularity", round(3 / 9, 4)),
        (-1, 1): (2, "popularity", round(4 / 9, 4)), (-1, 2): (1, "popularity", round(3 / 9, 4)),
    }
    table = load_markov(run.root, E0)
    assert table.predict([1, 2, 9, 3], k=2).tolist() == [[2, 1], [3, 4], [2, 1], [1, 2]]
    assert load_markov(run.root, E1).predict([5], k=1).tolist() == [[6]]


def test_centralized_tables_pool_every_edge(job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    pooled = pq.read_table(run.root / "features" / "centralized" / "popularity").to_pylist()
    per_edge = Counter()
    for edge in (E0, E1):
        per_edge.update({r["item_idx"]: r["count"] for r in rows(run.root, "popularity", edge)})
    assert {r["item_idx"]: r["count"] for r in pooled} == dict(per_edge)
    n_examples = sum(len(rows(run.root, "examples", e)) for e in (E0, E1))
    assert pq.read_table(run.root / "features" / "centralized" / "examples").num_rows == n_examples
    assert load_markov(run.root, None).predict([5], k=1).tolist() == [[6]]


def test_an_edge_features_change_only_with_its_own_logs(spark: Any, job: tuple[TinyRun, dict[str, Any]],
                                                         tmp_path: Path) -> None:
    run, _ = job
    changed = build(tmp_path, EDGE1 + [("U6", 8, "2025-04-03 09:00:00", "TV"),
                                       ("U6", 9, "2025-04-03 09:05:00", "mobile")])
    run_features(spark, settings(changed.root))
    for table in ("examples", "user_state", "user_stats", "sessions", "popularity", "transitions", "markov",
                  "cooc"):
        assert rows(changed.root, table, E0) == rows(run.root, table, E0), table
        assert rows(changed.root, table, E1) != rows(run.root, table, E1), table


def test_pooled_examples_are_the_union_of_the_edges(job: tuple[TinyRun, dict[str, Any]]) -> None:
    """No user roams here, so the pooled tables reuse the per-edge window pass: same rows, pooled."""
    run, _ = job
    key = ("user_id", "ts", "hist", "label")
    pooled = pq.read_table(run.root / "features" / "centralized" / "examples").to_pylist()
    union = [r for e in (E0, E1) for r in rows(run.root, "examples", e)]
    assert sorted(tuple(map(str, (r[k] for k in key))) for r in pooled) == \
        sorted(tuple(map(str, (r[k] for k in key))) for r in union)


def test_a_roaming_user_gets_one_pooled_history(spark: Any, tmp_path: Path) -> None:
    """U1 also watches item 9 at edge-01 between two edge-00 events: pooled, that is one sequence."""
    run = build(tmp_path, EDGE1 + [("U1", 9, "2025-04-01 10:30:00", "TV")])
    run_features(spark, settings(run.root))
    pooled = {(r["prev_idx"], r["next_idx"]): r["count"]
              for r in pq.read_table(run.root / "features" / "centralized" / "transitions").to_pylist()}
    assert pooled[(2, 9)] == 1 and pooled[(9, 3)] == 1
    per_edge = sum(len(rows(run.root, "examples", e)) for e in (E0, E1))
    assert pq.read_table(run.root / "features" / "centralized" / "examples").num_rows == per_edge + 1


def test_replay_and_training_read_one_device_encoding(spark: Any, tmp_path: Path) -> None:
    """Spark's device_idx is the one encoding: training examples and the replayed test stream of
    the same events carry DEVICES.index(device), every device included."""
    from edge_nodes.devices import DEVICES
    from simulation.replay.streams import load_stream

    run = TinyRun(tmp_path)
    days = ("2025-04-01", "2025-04-02", "2025-04-06")  # two train days, one test day
    for day_no, day in enumerate(days):
        for i, device in enumerate(DEVICES):
            run.add(E0, event("U9", 1 + (i + day_no) % 5, f"{day} 1{i}:00:00", E0, device))
    run.write()
    run_features(spark, settings(run.root))
    examples = pq.read_table(run.root / "features" / "examples" / f"edge_id={E0}").to_pylist()
    assert examples, "no training examples"
    by_ts = {(e["timestamp"]): DEVICES.index(e["device"]) for e in run.edges[E0].valid}
    for ex in examples:
        assert ex["device_idx"] == by_ts[ex["ts"].strftime("%Y-%m-%d %H:%M:%S")]
    stream = load_stream(run.root / "test" / f"edge_id={E0}", None, E0, 3)
    assert stream.device_idx.tolist() == list(range(len(DEVICES)))


def test_history_table_holds_each_users_train_events_and_examples_point_into_it(
        job: tuple[TinyRun, dict[str, Any]]) -> None:
    run, _ = job
    hist = {r["user_id"]: r["items"] for r in
            pq.read_table(run.root / "features" / "history" / f"edge_id={E0}").to_pylist()}
    # edge-00's train events (ts < cut) per user, in time order (U2's two same-second events by log order)
    assert hist == {"U1": [1, 2, 3, 1, 2], "U2": [1, 2, 4, 2]}
    for ex in pq.read_table(run.root / "features" / "examples" / f"edge_id={E0}").to_pylist():
        assert hist[ex["user_id"]][ex["user_pos"]] == ex["label"]
        assert ex["user_pos"] >= 1

"""The feature job: validate -> quarantine -> time split -> per-edge (and pooled) feature tables.

Spark plan: the raw logs are read and tagged once (valid, or a rejection reason) and cached;
the train events' window pass (history, previous item, sessions) is cached too; every table is
derived from those two, so each input row is parsed once. The pooled (centralized) tables reuse
the per-edge window pass unless a user has events at several edges.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_features import features as feat
from spark_features.cooc import cooc
from spark_features.errors import FeaturesError
from spark_features.markov import markov_sql
from spark_features.storage import read_catalog, write_per_edge, write_pooled
from spark_features.validate import classify, detect_format, discover_edges, flag_duplicates, read_raw

log = logging.getLogger(__name__)

POOLED_EDGE = "all"
EVENT_COLUMNS = ("edge_id", "seq", "user_id", "device", "device_idx", "content_id", "item_idx", "size_mb",
                 "duration_min", "ts")


@dataclass(frozen=True)
class FeatureSettings:
    """Plain settings of one job (the orchestrator maps its typed config onto these)."""
    run_dir: Path
    cut: str                                  # "YYYY-MM-DD HH:MM:SS": train < cut <= test
    edges: tuple[str, ...] | None = None      # None = every logs/edge=<id>/ folder
    input_format: str = "auto"                # auto | jsonl | parquet
    history_len: int = 5
    session_gap_min: int = 30
    half_life_days: float = 3.0
    markov_top_n: int = 10
    cooc_window: int = 5
    cooc_decay: float = 0.6
    cooc_symmetric: bool = False
    cooc_half_life_days: float = 0.0          # > 0: co-occurrences aged to the cut (spark_features/cooc.py)
    max_duration_min: float = 1440.0
    centralized: bool = True


def tag_rows(spark: SparkSession, s: FeatureSettings, edges: list[str]) -> DataFrame:
    """Every input row once, with `reason` (null = kept); raw text is kept only for rejects."""
    logs = s.run_dir / "logs"
    fmt = detect_format(logs, edges) if s.input_format == "auto" else s.input_format
    log.info("reading %s logs of %d edge(s) from %s", fmt, len(edges), logs)
    classified = classify(read_raw(spark, logs, edges, fmt), read_catalog(spark, s.run_dir / "catalog.parquet"),
                          s.max_duration_min)
    flagged = flag_duplicates(classified)
    reason = F.coalesce("reason", F.when(F.col("duplicate"), F.lit("duplicate")))
    split = F.when(reason.isNull(), F.when(F.col("ts") < feat.cut_ts(s.cut), "train").otherwise("test"))
    return flagged.select(*EVENT_COLUMNS, "duplicate", reason.alias("reason"), split.alias("split"),
                          F.when(reason.isNotNull(), F.col("raw")).alias("raw"))


def reconcile(tagged: DataFrame, edges: list[str]) -> dict[str, Any]:
    """Per-edge input/valid/train/test/quarantined counts (and by reason); they add up exactly."""
    per_edge: dict[str, dict[str, Any]] = {e: {"input": 0, "valid": 0, "train": 0, "test": 0,
                                               "quarantined": 0, "by_reason": {}} for e in edges}
    for row in tagged.groupBy("edge_id", "reason", "split").count().collect():  # <= edges x reasons rows
        e = per_edge[row.edge_id]
        e["input"] += row["count"]
        if row.reason is None:
            e["valid"] += row["count"]
            e[row.split] += row["count"]
        else:
            e["quarantined"] += row["count"]
            e["by_reason"][row.reason] = e["by_reason"].get(row.reason, 0) + row["count"]
    by_reason: dict[str, int] = {}
    for edge, e in per_edge.items():
        if not e["input"] == e["valid"] + e["quarantined"] == e["train"] + e["test"] + e["quarantined"]:
            raise FeaturesError(f"{edge}: counts do not reconcile ({e}); this is a bug in spark_features")
        for r, n in e["by_reason"].items():
            by_reason[r] = by_reason.get(r, 0) + n
    for e in per_edge.values():
        e["by_reason"] = dict(sorted(e["by_reason"].items()))
    ordered = dict(sorted(per_edge.items()))
    return {"edges": ordered, "input": sum(e["input"] for e in ordered.values()),
            "train_events": sum(e["train"] for e in ordered.values()),
            "test_events": sum(e["test"] for e in ordered.values()),
            "quarantined": {"total": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items())),
                            "per_edge": {k: e["quarantined"] for k, e in ordered.items()}}}


def write_tables(spark: SparkSession, seqd: DataFrame, s: FeatureSettings, out: Path, pooled: bool) -> None:
    """Every feature table of the sequenced train events (per edge, or pooled under features/centralized/)."""
    # Small aggregates read twice (their own table and the markov SQL): cached, not recomputed.
    trans = feat.transitions(seqd).persist(StorageLevel.MEMORY_AND_DISK)
    pop = feat.popularity(seqd, s.cut, s.half_life_days).persist(StorageLevel.MEMORY_AND_DISK)
    tables = {
        "examples": (feat.examples(seqd), ["user_id", "ts"]),
        "user_state": (feat.user_state(seqd, s.history_len), ["user_id"]),
        "history": (feat.history(seqd), ["user_id"]),
        "user_stats": (feat.user_stats(seqd, s.cut), ["user_id"]),
        "sessions": (feat.sessions(seqd), ["user_id", "session_idx"]),
        "popularity": (pop, ["item_idx"]),
        "transitions": (trans, ["prev_idx", "next_idx"]),
        "markov": (markov_sql(spark, trans, pop, s.markov_top_n, "pooled" if pooled else "edge"),
                   ["prev_idx", "rank"]),
        "cooc": (cooc(seqd, s.cooc_window, s.cooc_decay, s.cooc_symmetric, s.cut, s.cooc_half_life_days), ["prev_idx", "next_idx"]),
    }
    write = write_pooled if pooled else write_per_edge
    for name, (df, order) in tables.items():
        write(df, out / name, order)
    for cached in (trans, pop):
        cached.unpersist()


def users_on_several_edges(seqd: DataFrame) -> int:
    """Users with train events at more than one edge (0 for the generator: every user has a home edge)."""
    return (seqd.groupBy("user_id").agg(F.countDistinct("edge_id").alias("edges"))
            .where(F.col("edges") > 1).count())


def pooled_sequence(seqd: DataFrame, train: DataFrame, s: FeatureSettings) -> DataFrame:
    """The pooled (centralized) sequence of every train event.

    When no user is seen at two edges, each user's pooled history is their history at their
    one edge, so the per-edge window pass is reused with edge_id set to the pooled value
    (the window sort is most of the job). Otherwise the pooled window runs again, because a
    roaming user's pooled history interleaves events from several edges.
    """
    roaming = users_on_several_edges(seqd)
    if roaming == 0:
        return seqd.withColumn("edge_id", F.lit(POOLED_EDGE))
    log.info("%d user(s) have train events at several edges: pooled sequences are recomputed", roaming)
    pooled_train = train.withColumn("edge_id", F.lit(POOLED_EDGE))
    return feat.sequence(pooled_train, s.history_len, s.session_gap_min).persist(StorageLevel.MEMORY_AND_DISK)


def run_features(spark: SparkSession, s: FeatureSettings) -> dict[str, Any]:
    """Run the whole job on one run directory; return (and save) the reconciliation report."""
    edges = list(s.edges) if s.edges else discover_edges(s.run_dir / "logs")
    tagged = tag_rows(spark, s, edges).persist(StorageLevel.MEMORY_AND_DISK)
    report = reconcile(tagged, edges)
    for edge, e in report["edges"].items():
        log.info("%s: %d rows = %d valid (%d train, %d test) + %d quarantined %s", edge, e["input"], e["valid"],
                 e["train"], e["test"], e["quarantined"], e["by_reason"] or "")
    write_per_edge(tagged.where(F.col("reason").isNotNull()).select("edge_id", "seq", "raw", "reason"),
                   s.run_dir / "quarantine", ["seq"])
    events = tagged.where(F.col("reason").isNull())
    test = events.where(F.col("split") == "test").select(
        "edge_id", "user_id", "content_id", "item_idx", "ts", "device", "device_idx",
        F.col("duration_min").alias("duration"),
        "size_mb", "seq")
    write_per_edge(test, s.run_dir / "test", ["ts", "seq"])
    train = events.where(F.col("split") == "train").withColumn("origin", F.col("edge_id"))
    features = s.run_dir / "features"
    seqd = feat.sequence(train, s.history_len, s.session_gap_min).persist(StorageLevel.MEMORY_AND_DISK)
    write_tables(spark, seqd, s, features, pooled=False)
    if s.centralized:
        pooled = pooled_sequence(seqd, train, s)
        write_tables(spark, pooled, s, features / "centralized", True)
        pooled.unpersist()
    seqd.unpersist()
    tagged.unpersist()
    features.mkdir(parents=True, exist_ok=True)
    (features / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

"""Per-edge features from training events only: sequences, sessions, user stats, popularity.

Every aggregate and window is keyed by `edge_id` first, so an edge's features depend on its own
events alone (the centralized variant sets edge_id to one pooled value). All of it is built-in
Spark functions: no Python UDFs, nothing collected to the driver.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from spark_features.schema import TIMESTAMP_FORMAT

SECONDS_PER_DAY = 86400.0


def cut_ts(cut: str) -> Column:
    """The cut as a Spark timestamp (parsed in the session time zone, like the events)."""
    return F.to_timestamp(F.lit(cut), TIMESTAMP_FORMAT)


def _user_window() -> WindowSpec:
    # origin (the source edge) only breaks ties when edges are pooled; seq orders same-second events.
    return Window.partitionBy("edge_id", "user_id").orderBy("ts", "seq", "origin")


def sequence(train: DataFrame, history_len: int, session_gap_min: int) -> DataFrame:
    """One row per train event with the user's previous item, last-k history and session index."""
    w = _user_window()
    recent = F.collect_list("item_idx").over(w.rowsBetween(-history_len, -1))
    prev_ts = F.lag("ts").over(w)
    gap_s = F.unix_seconds("ts") - F.unix_seconds(prev_ts)
    new_session = F.when(prev_ts.isNull() | (gap_s > session_gap_min * 60), 1).otherwise(0)
    seqd = train.select(
        "edge_id", "user_id", "ts", "seq", "origin", "item_idx", "device_idx", "duration_min",
        F.lag("item_idx").over(w).alias("prev_idx"),
        F.concat(F.array_repeat(F.lit(-1), F.lit(history_len) - F.size(recent)), recent).alias("hist"),
        F.lead("seq").over(w).isNull().alias("is_last"),
        new_session.alias("new_session"),
        (F.row_number().over(w) - 1).alias("user_pos"),
    )
    running = w.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return seqd.withColumn("session_idx", (F.sum("new_session").over(running) - 1).cast("int"))


def examples(seqd: DataFrame) -> DataFrame:
    """Training examples: last k items (oldest first, -1 padded), device, hour, dow (Mon=0), label,
    and user_pos: the label's index in the user's full history at this edge (the history table)."""
    return seqd.where(F.col("prev_idx").isNotNull()).select(
        "edge_id", "user_id", "ts", "user_pos", "hist", "device_idx",
        F.hour("ts").alias("hour"),
        ((F.dayofweek("ts") + 5) % 7).cast("int").alias("dow"),
        F.col("item_idx").alias("label"),
    )


def user_state(seqd: DataFrame, history_len: int) -> DataFrame:
    """Where each user stands at the cut: the last k items watched before it, and when."""
    after = F.slice(F.concat("hist", F.array("item_idx")), 2, history_len)
    return seqd.where("is_last").select("edge_id", "user_id", after.alias("hist"), F.col("ts").alias("last_ts"))


def history(seqd: DataFrame) -> DataFrame:
    """Every user's full training-period history at the edge: item_idx in time order (user_pos)."""
    ordered = F.array_sort(F.collect_list(F.struct("user_pos", "item_idx")))
    return (seqd.groupBy("edge_id", "user_id")
            .agg(F.transform(ordered, lambda e: e["item_idx"]).alias("items")))


def transitions(seqd: DataFrame) -> DataFrame:
    """Next-content transition counts: (previous item, next item) pairs of consecutive user events."""
    return (seqd.where(F.col("prev_idx").isNotNull())
            .groupBy("edge_id", "prev_idx", F.col("item_idx").alias("next_idx"))
            .agg(F.count(F.lit(1)).alias("count")))


def sessions(seqd: DataFrame) -> DataFrame:
    """Viewing sessions: a user's events split where the gap exceeds the inactivity threshold."""
    return (seqd.groupBy("edge_id", "user_id", "session_idx")
            .agg(F.min("ts").alias("start_ts"), F.max("ts").alias("end_ts"),
                 F.count(F.lit(1)).alias("events"), F.sum("duration_min").alias("minutes")))


def user_stats(seqd: DataFrame, cut: str) -> DataFrame:
    """Per-user watch counts and frequency (events per day since first seen, at least one day)."""
    stats = seqd.groupBy("edge_id", "user_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.countDistinct("item_idx").alias("distinct_items"),
        F.sum("duration_min").alias("minutes"),
        (F.max("session_idx") + 1).alias("sessions"),
        F.countDistinct(F.to_date("ts")).alias("active_days"),
        F.min("ts").alias("first_ts"),
        F.max("ts").alias("last_ts"),
    )
    days = (F.unix_seconds(cut_ts(cut)) - F.unix_seconds("first_ts")) / SECONDS_PER_DAY
    return stats.withColumn("events_per_day", F.col("events") / F.greatest(days, F.lit(1.0)))


def popularity(train: DataFrame, cut: str, half_life_days: float) -> DataFrame:
    """Item views per edge, overall and recency-weighted (each view decays by half per half-life)."""
    age_days = (F.unix_seconds(cut_ts(cut)) - F.unix_seconds("ts")) / SECONDS_PER_DAY
    weight = F.exp(F.lit(-math.log(2.0) / half_life_days) * age_days)
    return (train.groupBy("edge_id", "item_idx")
            .agg(F.count(F.lit(1)).alias("count"), F.sum(weight).alias("recency_score")))

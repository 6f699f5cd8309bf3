"""Item co-occurrence counts per edge: the `itemcf` baseline's only input, summed by the server.

For every train event of a user (ordered by ts, seq as the other tables), each of the user's
previous W items (W = features.cooc_window) co-occurs with it, weighted decay^(lag - 1)
(lag 1 = the item just before). Symmetric counts add the reverse pair (next -> prev) with the
same weight: people who watch A near B also watch B near A, whatever the order. Aged counts
(half_life_days > 0) also weigh each pair by 2^-((cut - t) / half-life), t being the later event's
time: tastes drift, and on a real trace the last years' pairs predict the test period better than
the first years'. Built-in Spark functions and a window only: no Python UDFs, nothing collected
to the driver.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_features.features import SECONDS_PER_DAY, cut_ts


def cooc(seqd: DataFrame, window: int, decay: float, symmetric: bool, cut: str = "",
         half_life_days: float = 0.0) -> DataFrame:
    """(edge_id, prev_idx, next_idx, count double): decay-weighted co-occurrences within W events,
    aged to `cut` when half_life_days > 0."""
    w = Window.partitionBy("edge_id", "user_id").orderBy("ts", "seq", "origin")
    with_prev = seqd.select("edge_id", "item_idx", "ts", F.collect_list("item_idx").over(w.rowsBetween(-window, -1))
                            .alias("prev"))
    pairs = with_prev.select("edge_id", "item_idx", "ts", F.size("prev").alias("n"),
                             F.posexplode("prev").alias("pos", "prev_idx"))
    weight = F.pow(F.lit(float(decay)), (F.col("n") - F.col("pos") - 1).cast("double"))
    if half_life_days > 0:
        age_days = (F.unix_seconds(cut_ts(cut)) - F.unix_seconds("ts")) / SECONDS_PER_DAY
        weight = weight * F.pow(F.lit(2.0), -age_days / F.lit(float(half_life_days)))
    forward = pairs.select("edge_id", "prev_idx", F.col("item_idx").alias("next_idx"), weight.alias("w"))
    if symmetric:
        backward = forward.select("edge_id", F.col("next_idx").alias("prev_idx"),
                                  F.col("prev_idx").alias("next_idx"), "w")
        forward = forward.unionByName(backward)
    return (forward.groupBy("edge_id", F.col("prev_idx").cast("int").alias("prev_idx"),
                            F.col("next_idx").cast("int").alias("next_idx"))
            .agg(F.sum("w").cast("double").alias("count")))

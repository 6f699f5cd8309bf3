"""Reading the shared catalog and writing feature tables as Parquet with a sane number of files."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_features.errors import FeaturesInputError

log = logging.getLogger(__name__)

CATALOG_COLUMNS = ("content_id", "item_idx", "size_mb")


def read_catalog(spark: SparkSession, path: Path) -> DataFrame:
    """The public catalog's join keys: content_id -> item_idx (int), size_mb (double)."""
    if not path.is_file():
        raise FeaturesInputError(f"{path} is missing; run `edgecache generate` (or ingest) first")
    table = spark.read.parquet(str(path))
    absent = [c for c in CATALOG_COLUMNS if c not in table.columns]
    if absent:
        raise FeaturesInputError(f"{path} lacks column(s) {', '.join(absent)}; docs/internals.md lists them")
    catalog = table.select("content_id", F.col("item_idx").cast("int"), F.col("size_mb").cast("double"))
    counts = catalog.agg(F.count(F.lit(1)), F.countDistinct("content_id")).first()  # tiny table
    rows, ids = (counts[0], counts[1]) if counts is not None else (0, 0)
    if rows != ids:
        raise FeaturesInputError(f"{path} has {rows - ids} duplicate content_id row(s); each title needs "
                                 "exactly one row or the logs cannot be joined unambiguously")
    return catalog


def write_per_edge(df: DataFrame, path: Path, order: list[str]) -> None:
    """One file per edge under path/edge_id=<id>/, rows sorted (deterministic readers downstream).

    Only the edges present in `df` are replaced (dynamic partition overwrite), so a job run on a
    subset of edges leaves the others' files alone.
    """
    (df.repartition("edge_id").sortWithinPartitions("edge_id", *order)
     .write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy("edge_id").parquet(str(path)))
    log.info("wrote %s", path)


def write_pooled(df: DataFrame, path: Path, order: list[str]) -> None:
    """One sorted file for a pooled (centralized) table; the upstream work stays parallel."""
    (df.drop("edge_id").repartition(1).sortWithinPartitions(*order)
     .write.mode("overwrite").parquet(str(path)))
    log.info("wrote %s", path)

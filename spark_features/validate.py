"""Read raw per-edge logs and sort every row into a valid event or a quarantined one, with a reason.

Each input row keeps `seq`, its position in its edge's log (part files in name order, lines in
file order), so the replay can order timestamp ties and a quarantined row can be found again.
Spark 4 runs with ANSI mode on; a single bad value would fail a plain cast there, so fields are
read as strings and converted with `try_cast` / `try_to_timestamp`, which yield null instead.
ANSI stays on for the rest of the job, so genuine bugs (overflow, bad casts) still fail loudly.
"""

from __future__ import annotations

import logging
from functools import reduce
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from edge_nodes.devices import DEVICES
from spark_features.errors import FeaturesInputError
from spark_features.schema import (
    CORRUPT_COLUMN,
    EVENT_FIELDS,
    RAW_SCHEMA,
    REQUIRED_FIELDS,
    TIMESTAMP_FORMAT,
)

log = logging.getLogger(__name__)

FORMATS = {"jsonl": "*.jsonl", "parquet": "*.parquet"}


def discover_edges(logs_dir: Path) -> list[str]:
    """Edge ids that have a log folder (`logs/edge=<id>/`), sorted."""
    edges = sorted(p.name.split("=", 1)[1] for p in logs_dir.glob("edge=*") if p.is_dir())
    if not edges:
        raise FeaturesInputError(f"no edge logs under {logs_dir} (expected logs/edge=<id>/part-*.jsonl); "
                                 "run `edgecache generate` or `edgecache ingest` first")
    return edges


def detect_format(logs_dir: Path, edges: list[str]) -> str:
    """`jsonl` or `parquet`, from the part files present."""
    for fmt, pattern in FORMATS.items():
        if any(any((logs_dir / f"edge={e}").glob(pattern)) for e in edges):
            return fmt
    raise FeaturesInputError(f"no *.jsonl or *.parquet part files under {logs_dir}/edge=*")


def read_raw(spark: SparkSession, logs_dir: Path, edges: list[str], fmt: str) -> DataFrame:
    """Every input row: edge_id (from its folder), seq, raw text, the string fields, parse status."""
    missing = [e for e in edges if not (logs_dir / f"edge={e}").is_dir()]
    if missing:
        raise FeaturesInputError(f"no log folder for edge(s) {', '.join(missing)} under {logs_dir}")
    reader = (spark.read.option("basePath", str(logs_dir))
              .option("pathGlobFilter", FORMATS[fmt]))
    paths = [str(logs_dir / f"edge={e}") for e in edges]
    df = _parse_jsonl(reader.text(paths)) if fmt == "jsonl" else _parse_parquet(reader.parquet(*paths))
    return with_log_position(spark, df)


def with_log_position(spark: SparkSession, df: DataFrame) -> DataFrame:
    """`seq`: the row's position in its edge's log (file name, then split offset, then row in split).

    A split's rows are consecutive in one scan partition, so `_row` (monotonically_increasing_id)
    minus the split's smallest `_row` is the row's index inside the split. Only the per-split
    counts are aggregated and turned into offsets on the driver (a few rows per file), then
    broadcast back: no shuffle and sort of every row by edge, which put a whole edge's log,
    raw text included, through one task (the largest cost of the job at 4M events). Both scans
    plan the same files in the same session, so they get the same partitions and `_row` values.
    """
    keys = ["edge_id", "_file", "_block"]
    splits = (df.groupBy(*keys).agg(F.min("_row").alias("_row0"), F.count(F.lit(1)).alias("_n"))
              .orderBy(*keys).collect())
    rows, offset, edge = [], 0, None
    for r in splits:
        if r.edge_id != edge:
            edge, offset = r.edge_id, 0
        rows.append((r.edge_id, r._file, r._block, r._row0, offset))
        offset += r._n
    schema = "edge_id string, _file string, _block long, _row0 long, _offset long"
    offsets = spark.createDataFrame(rows, schema)
    return (df.join(F.broadcast(offsets), on=keys, how="inner")
            .withColumn("seq", F.col("_offset") + F.col("_row") - F.col("_row0"))
            .drop("_file", "_block", "_row", "_row0", "_offset"))


def _field_alias(name: str) -> str:
    # The line's own edge_id is kept apart from the folder's, which is authoritative.
    return "edge_field" if name == "edge_id" else name


def _position_columns() -> list[Column]:
    return [F.col("_metadata.file_name").alias("_file"), F.col("_metadata.file_block_start").alias("_block"),
            F.monotonically_increasing_id().alias("_row")]


def _parse_jsonl(lines: DataFrame) -> DataFrame:
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    parsed = lines.select(F.col("edge").alias("edge_id"), F.col("value").alias("raw"), *_position_columns(),
                          F.from_json("value", RAW_SCHEMA, options).alias("_p"))
    fields = [F.col(f"_p.{name}").alias(_field_alias(name)) for name in EVENT_FIELDS]
    ok = F.col("_p").isNotNull() & F.col(f"_p.{CORRUPT_COLUMN}").isNull()
    return parsed.select("edge_id", "raw", "_file", "_block", "_row", *fields, ok.alias("parsed_ok"))


def _parse_parquet(table: DataFrame) -> DataFrame:
    present = set(table.columns)
    data = [c for c in table.columns if c != "edge"]
    raw = F.to_json(F.struct(*data)) if data else F.lit("{}")
    fields = [(F.col(f"`{name}`").cast("string") if name in present else F.lit(None).cast("string"))
              .alias(_field_alias(name)) for name in EVENT_FIELDS]
    return table.select(F.col("edge").alias("edge_id"), raw.alias("raw"), *_position_columns(), *fields,
                        F.lit(True).alias("parsed_ok"))


def classify(raw: DataFrame, catalog: DataFrame, max_duration_min: float) -> DataFrame:
    """Typed columns plus `reason` (null = valid so far; duplicates are found later)."""
    ts = F.try_to_timestamp(F.col("timestamp"), F.lit(TIMESTAMP_FORMAT))
    duration = F.col("duration").try_cast("double")
    device_idx = (F.array_position(F.array(*[F.lit(d) for d in DEVICES]), F.col("device")) - 1).cast("int")
    df = (raw.withColumn("ts", ts).withColumn("duration_min", duration).withColumn("device_idx", device_idx)
          .join(F.broadcast(catalog), on="content_id", how="left"))
    missing = reduce(lambda a, b: a | b,
                     [F.col(f).isNull() | (F.trim(F.col(f)) == "") for f in REQUIRED_FIELDS])
    reason = (F.when(~F.col("parsed_ok"), "unparseable")
              .when(missing, "missing_field")
              .when(F.col("ts").isNull(), "bad_timestamp")
              .when(F.col("duration_min").isNull(), "bad_duration")
              .when(F.col("duration_min") < 0, "negative_duration")
              .when(F.isnan("duration_min") | (F.col("duration_min") > max_duration_min), "absurd_duration")
              .when(F.col("device_idx") < 0, "unknown_device")
              .when(F.col("item_idx").isNull(), "unknown_content")
              .when(F.col("edge_field").isNotNull() & (F.col("edge_field") != F.col("edge_id")), "edge_mismatch"))
    return df.withColumn("reason", reason)


def flag_duplicates(classified: DataFrame) -> DataFrame:
    """Add `duplicate`: true for a valid row whose field values equal an earlier (lower seq) valid row's."""
    # Partitioned by (edge, user) like the sequencing windows downstream, so Spark shuffles once;
    # exact copies sort next to each other, the first copy (lowest seq) stays valid.
    keys = ["reason", "ts", "content_id", "device", "duration", "edge_field"]
    w = Window.partitionBy("edge_id", "user_id").orderBy(*keys, "seq")
    same = reduce(lambda a, b: a & b, [F.col(k).eqNullSafe(F.lag(k).over(w)) for k in keys])
    return classified.withColumn("duplicate", F.col("reason").isNull() & F.coalesce(same, F.lit(False)))

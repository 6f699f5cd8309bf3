"""Benchmark (not a test): events/s of the Spark feature job on ~1M events, against DuckDB.

    python benchmarks/bench_features.py [--events 1000000] [--master local[2]] [--keep DIR] [--json PATH]

Writes a synthetic run directory (numpy: Zipf items, per-user sessions, 1% dirty rows) in the
generate contract, then measures in the same process:
  1. JVM start-up (first SparkSession, after the Java preflight),
  2. the feature job as the pipeline runs it (validate, quarantine, split, every per-edge table;
     pooled tables off, features.pooled_tables' default), cold and warm,
  3. the transition aggregation alone in Spark (read JSONL, lag over user/time, group count),
  4. the same transition aggregation in DuckDB (same threads), and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spark_features.job import FeatureSettings, run_features  # noqa: E402
from spark_features.session import get_spark  # noqa: E402

log = logging.getLogger("bench_features")
DEVICES = np.array(["TV", "mobile", "tablet", "web", "console"])
START = np.datetime64("2025-04-01T00:00:00")
DAYS, TEST_DAYS = 28, 7


def write_workload(root: Path, events: int, edges: int, users: int, items: int, seed: int = 0) -> None:
    """A synthetic run directory: catalog.parquet and logs/edge=<id>/part-00000.jsonl in time order."""
    rng = np.random.default_rng(seed)
    pq.write_table(pa.table({"content_id": [f"C{i:05d}" for i in range(items)],
                             "item_idx": pa.array(np.arange(items), pa.int32()),
                             "size_mb": rng.uniform(50, 4000, items)}), root / "catalog.parquet")
    user = rng.integers(0, users, events)
    item = np.minimum(rng.zipf(1.3, events) - 1, items - 1)
    ts = START + rng.integers(0, DAYS * 86400, events).astype("timedelta64[s]")
    edge = user % edges
    order = np.lexsort((ts, edge))
    # ~1% dirty rows: 1 = broken JSON, 2 = unknown device, 3 = negative duration, 4 = bad timestamp
    dirty = np.where(rng.random(events) < 0.01, rng.integers(1, 5, events), 0)
    for e in range(edges):
        idx = order[edge[order] == e]
        lines = [_line(u, d, i, m, str(t).replace("T", " "), f"edge-{e:02d}", bad)
                 for u, d, i, m, t, bad in zip(user[idx], DEVICES[user[idx] % 5], item[idx],
                                               rng.integers(1, 120, len(idx)), ts[idx], dirty[idx], strict=True)]
        folder = root / "logs" / f"edge=edge-{e:02d}"
        folder.mkdir(parents=True)
        (folder / "part-00000.jsonl").write_text("\n".join(lines) + "\n")


def _line(user: int, device: str, item: int, minutes: int, ts: str, edge: str, bad: int) -> str:
    if bad == 1:
        return f'{{"user_id": "U{user:06d}", "device": "{device}", "dura'
    device = "toaster" if bad == 2 else device
    minutes = -minutes if bad == 3 else minutes
    ts = ts.replace(" ", "T") + "Z" if bad == 4 else ts
    return (f'{{"user_id": "U{user:06d}", "device": "{device}", "content_id": "C{item:05d}", '
            f'"duration": {minutes}, "timestamp": "{ts}", "edge_id": "{edge}"}}')


def spark_transitions(spark, root: Path, out: Path) -> int:  # noqa: ANN001
    """Only the transition aggregation, in Spark: parse, lag over (edge, user, time), group count."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from spark_features.schema import RAW_SCHEMA
    lines = spark.read.option("basePath", str(root / "logs")).text(str(root / "logs"))
    p = F.from_json("value", RAW_SCHEMA)
    df = (lines.select(F.col("edge").alias("edge_id"), p["user_id"].alias("user_id"),
                       p["content_id"].alias("content_id"),
                       F.try_to_timestamp(p["timestamp"], F.lit("yyyy-MM-dd HH:mm:ss")).alias("ts"))
          .where(F.col("ts").isNotNull() & F.col("content_id").isNotNull()))
    w = Window.partitionBy("edge_id", "user_id").orderBy("ts", "content_id")
    trans = (df.withColumn("prev", F.lag("content_id").over(w)).where(F.col("prev").isNotNull())
             .groupBy("edge_id", "prev", "content_id").count())
    trans.write.mode("overwrite").parquet(str(out))
    return spark.read.parquet(str(out)).count()


def duckdb_transitions(root: Path, out: Path, threads: int) -> int:
    """The same aggregation in DuckDB, from the same JSONL files."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    glob = str(root / "logs" / "edge=*" / "*.jsonl")
    con.execute(f"""
        COPY (
          WITH ev AS (
            SELECT edge, user_id, content_id, try_strptime(timestamp, '%Y-%m-%d %H:%M:%S') AS ts
            FROM read_json('{glob}', format = 'newline_delimited', hive_partitioning = true,
                           ignore_errors = true,
                           columns = {{user_id: 'VARCHAR', content_id: 'VARCHAR', timestamp: 'VARCHAR'}})
            WHERE content_id IS NOT NULL),
          t AS (SELECT edge, content_id,
                       lag(content_id) OVER (PARTITION BY edge, user_id ORDER BY ts, content_id) AS prev
                FROM ev WHERE ts IS NOT NULL)
          SELECT edge, prev, content_id, count(*) AS count FROM t WHERE prev IS NOT NULL
          GROUP BY ALL
        ) TO '{out}' (FORMAT parquet)""")
    return int(con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0])


def timed(label: str, fn, *args):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    log.info("%-34s %7.2f s", label, dt)
    return out, dt


def measure(root: Path, events: int, edges: int, master: str, shuffle_partitions: int) -> dict:
    """Write the workload under root, time the Spark job and both transition aggregations."""
    from benchmarks.harness import figure

    n = events
    _, t_gen = timed(f"generate {n} events (numpy)", write_workload, root, n, edges, 4000, 3000)
    spark, t_jvm = timed(f"JVM start-up ({master})", get_spark, master, shuffle_partitions, "3g")
    cut = str(START + np.timedelta64(DAYS - TEST_DAYS, "D")).replace("T", " ")
    settings = FeatureSettings(run_dir=root, cut=cut, centralized=False)
    report, t_cold = timed("feature job (first run)", run_features, spark, settings)
    _, t_warm = timed("feature job (second run, warm JVM)", run_features, spark, settings)
    n_sp, t_sp = timed("transitions only: Spark", spark_transitions, spark, root, root / "bench_spark_trans")
    threads = int(spark.sparkContext.defaultParallelism)
    n_dd, t_dd = timed(f"transitions only: DuckDB ({threads} thr)", duckdb_transitions, root,
                       root / "bench_duckdb_trans.parquet", threads)
    duck = f"DuckDB transitions ({threads} thr)"
    whole = "the whole job (validate, split, every per-edge table) vs one aggregation"
    figures = [
        figure("Spark transitions events/s", n / t_sp, "ev/s", duck, n / t_dd, "same aggregation, same files"),
        figure("Spark feature job events/s (warm)", n / t_warm, "ev/s", duck, n / t_dd, whole),
        figure("Spark feature job events/s (cold)", n / t_cold, "ev/s", duck, n / t_dd, whole),
        figure("Spark job incl. JVM start events/s", n / (t_jvm + t_cold), "ev/s", duck, n / t_dd, whole),
    ]
    return {"events": n, "edges": edges, "master": master, "figures": figures,
            "seconds": {"generate": t_gen, "jvm_start": t_jvm, "job_cold": t_cold, "job_warm": t_warm,
                        "spark_transitions": t_sp, "duckdb_transitions": t_dd},
            "transition_rows": {"spark": n_sp, "duckdb": n_dd, "same": n_sp == n_dd},
            "rows": {"input": report["input"], "train": report["train_events"], "test": report["test_events"],
                     "quarantined": report["quarantined"]["total"]}}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=8)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--shuffle-partitions", type=int, default=8)
    ap.add_argument("--keep", type=Path, help="write the run here and keep it")
    ap.add_argument("--json", type=Path, help="also write the figures (value, baseline, ratio) here")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench_features_"))
    root.mkdir(parents=True, exist_ok=True)
    res = measure(root, a.events, a.edges, a.master, a.shuffle_partitions)
    n, sec, rows = a.events, res["seconds"], res["rows"]
    n_sp, n_dd = res["transition_rows"]["spark"], res["transition_rows"]["duckdb"]
    log.info("transition rows: Spark %d, DuckDB %d (%s)", n_sp, n_dd, "same" if n_sp == n_dd else "DIFFERENT")
    log.info("rows %d: %d train, %d test, %d quarantined", rows["input"], rows["train"], rows["test"],
             rows["quarantined"])
    rate = {"job incl. JVM start-up": n / (sec["jvm_start"] + sec["job_cold"]), "job, first run": n / sec["job_cold"],
            "job, warm JVM": n / sec["job_warm"], "transitions, Spark": n / sec["spark_transitions"],
            "transitions, DuckDB": n / sec["duckdb_transitions"]}
    for k, v in rate.items():
        log.info("%-26s %10.0f events/s", k, v)
    log.info("DuckDB / Spark on the transition aggregation: %.2fx", sec["spark_transitions"] / sec["duckdb_transitions"])
    log.info("DuckDB transitions / full Spark job (warm): %.2fx", sec["job_warm"] / sec["duckdb_transitions"])
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    if a.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

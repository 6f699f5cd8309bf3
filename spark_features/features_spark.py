"""Entry point of the feature job: `spark-submit spark_features/features_spark.py --run-dir DIR --cut ...`.

Also importable: `run_features(spark, FeatureSettings(...))` is what `edgecache features` calls.
Any Spark master works unchanged (`--master spark://host:7077`, `yarn`, `local[4]`); under
spark-submit the master given to spark-submit wins, and the run directory must then be on a
filesystem every executor can reach. Example:

    spark-submit spark_features/features_spark.py --run-dir runs/smoke \\
        --cut "2025-04-05 00:00:00" --edges edge-00,edge-01 --shuffle-partitions 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (spark-submit): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spark_features.errors import FeaturesError, FeaturesInputError  # noqa: E402
from spark_features.job import FeatureSettings, run_features  # noqa: E402
from spark_features.session import get_spark  # noqa: E402

__all__ = ["FeatureSettings", "main", "normalize_cut", "run_features"]
log = logging.getLogger("spark_features")


def normalize_cut(text: str) -> str:
    """'2025-04-22' or '2025-04-22T00:00[:00]' -> '2025-04-22 00:00:00' (the events' format)."""
    try:
        return datetime.datetime.fromisoformat(text.strip()).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError as e:
        raise FeaturesInputError(f"--cut {text!r} is not a date or 'YYYY-MM-DD HH:MM:SS'") from e


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Validate per-edge viewing logs and build features with Spark.")
    p.add_argument("--run-dir", required=True, type=Path, help="run directory with logs/ and catalog.parquet")
    p.add_argument("--cut", required=True, help="train < cut <= test, e.g. '2025-04-22 00:00:00'")
    p.add_argument("--edges", default="", help="comma-separated edge ids (default: every logs/edge=<id>/)")
    p.add_argument("--format", default="auto", choices=("auto", "jsonl", "parquet"))
    p.add_argument("--master", default="local[*]", help="ignored under spark-submit: its --master wins")
    p.add_argument("--shuffle-partitions", type=int, default=8)
    p.add_argument("--driver-memory", default="2g")
    p.add_argument("--history-len", type=int, default=5)
    p.add_argument("--session-gap-min", type=int, default=30)
    p.add_argument("--half-life-days", type=float, default=3.0)
    p.add_argument("--markov-top-n", type=int, default=10)
    p.add_argument("--cooc-window", type=int, default=5, help="W: previous items each event co-occurs with")
    p.add_argument("--cooc-decay", type=float, default=0.6, help="weight of lag L is decay**(L-1)")
    p.add_argument("--cooc-symmetric", action="store_true", help="also count next -> prev pairs")
    p.add_argument("--cooc-half-life-days", type=float, default=0.0,
                   help="> 0: a co-occurrence counts 2^-(days before the cut / this); 0 = plain counts")
    p.add_argument("--max-duration-min", type=float, default=1440.0)
    p.add_argument("--no-centralized", action="store_true", help="skip the pooled (centralized) tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print the reconciliation summary; exit 2 with one line on a domain error."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)  # stdout carries only the JSON summary
    a = parse_args(argv)
    try:
        settings = FeatureSettings(
            run_dir=a.run_dir, cut=normalize_cut(a.cut),
            edges=tuple(e.strip() for e in a.edges.split(",") if e.strip()) or None,
            input_format=a.format, history_len=a.history_len, session_gap_min=a.session_gap_min,
            half_life_days=a.half_life_days, markov_top_n=a.markov_top_n,
            cooc_window=a.cooc_window, cooc_decay=a.cooc_decay, cooc_symmetric=a.cooc_symmetric,
            cooc_half_life_days=a.cooc_half_life_days,
            max_duration_min=a.max_duration_min, centralized=not a.no_centralized)
        spark = get_spark(a.master, a.shuffle_partitions, a.driver_memory)
        report = run_features(spark, settings)
    except FeaturesError as e:
        log.error("%s", e)
        return 2
    summary = {k: report[k] for k in ("input", "train_events", "test_events", "quarantined")}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `features` stage: maps the typed config onto the Spark feature job and reports its counts.

The cut is the span's start + (its days - split.test_days) days at 00:00 (simulation/span.py:
the generator's configured span, or an ingested trace's own): train events are strictly
before it, the replayed test stream at or after it.
"""

from __future__ import annotations

import logging
from typing import Any

from simulation.errors import EdgecacheError, RunDirError
from simulation.pipeline import StageContext
from simulation.span import time_cut
from spark_features.errors import FeaturesError, FeaturesInputError
from spark_features.job import FeatureSettings, run_features
from spark_features.memory import (
    AUTO,
    input_bytes,
    jvm_ran_out_of_heap,
    out_of_heap_error,
    quick_jit_for,
    resolve_driver_memory,
)
from spark_features.session import active_session, discard_dead_session, get_spark, stop_spark

log = logging.getLogger(__name__)


def settings_for(ctx: StageContext) -> FeatureSettings:
    """Plain job settings from the experiment config (spark_features never sees the config)."""
    f = ctx.cfg.features
    return FeatureSettings(
        run_dir=ctx.run.root, cut=time_cut(ctx.cfg, ctx.run), edges=None, input_format="auto",
        history_len=f.history_len, session_gap_min=f.session_gap_min,
        half_life_days=f.recency_half_life_days, markov_top_n=f.markov_top_n,
        cooc_window=f.cooc_window, cooc_decay=f.cooc_decay, cooc_symmetric=f.cooc_symmetric,
        cooc_half_life_days=f.cooc_half_life_days,
        max_duration_min=f.max_duration_min, centralized=f.pooled_tables)


def features_stage(ctx: StageContext) -> dict[str, Any]:
    """Validate the logs and build every feature table; return results.json's counts."""
    ctx.run.require(ctx.run.logs, "generate")
    ctx.run.require(ctx.run.catalog, "generate")
    settings, f = settings_for(ctx), ctx.cfg.features
    owned = active_session() is None  # stop only a session this stage started (tests share one)
    heap = resolve_driver_memory(f.driver_memory, ctx.run.logs)
    if f.driver_memory == AUTO:
        log.info("features.driver_memory = auto: %s heap for %d MB of logs", heap, input_bytes(ctx.run.logs) >> 20)
    try:
        spark = get_spark(f.spark_master, f.shuffle_partitions, heap, quick_jit=quick_jit_for(ctx.run.logs))
        report = run_features(spark, settings)
    except FeaturesInputError as e:
        raise RunDirError(str(e)) from e
    except FeaturesError as e:
        raise EdgecacheError(str(e)) from e
    except Exception as e:  # a py4j error: when the JVM died of OutOfMemoryError, say so and what to set
        if owned and jvm_ran_out_of_heap():
            discard_dead_session()
            raise EdgecacheError(str(out_of_heap_error(f.driver_memory, heap, ctx.run.logs))) from e
        raise
    finally:
        if owned:
            stop_spark()  # frees the JVM's memory before training
    q = report["quarantined"]
    ctx.console.print(f"features: {report['input']} rows -> {report['train_events']} train, "
                      f"{report['test_events']} test, {q['total']} quarantined (cut {settings.cut})")
    # quarantined = {reason: rows} (the report tabulates it), per edge beside it; totals add up.
    return {
        "workload": {"train_events": report["train_events"], "test_events": report["test_events"],
                     "quarantined": q["by_reason"],
                     "quarantined_per_edge": {e: c["by_reason"] for e, c in report["edges"].items()}},
        "features": {"cut": settings.cut, "input_rows": report["input"], "per_edge": report["edges"]},
    }

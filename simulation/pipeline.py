"""The pipeline: stages in order, each reading and writing one run directory.

A stage is a function `(StageContext) -> dict` whose dict is merged into results.json. Each
stage lives in its wing (`simulation/<wing>/stage.py`) and is imported only when it runs.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from edge_nodes.devices import DEVICES
from monitoring import metrics
from simulation import interrupts
from simulation.config import ExperimentConfig
from simulation.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    cfg: ExperimentConfig
    run: RunDir
    console: Console
    results: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[StageContext], dict[str, Any]]


# Stage name -> ("module:function", the config sections whose keys it is the first to read), in
# pipeline order. The wings mirror the sections (simulation/<wing>/stage.py); a sweep over a key
# reruns from the stage that reads its section. Imported lazily: Spark and Ray are heavy and a
# single-stage command needs only its own.
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "generate": ("simulation.workload.stage:generate_stage", ("run", "workload")),
    "features": ("simulation.features_stage:features_stage", ("split", "features")),
    "train": ("simulation.training.stage:train_stage", ("model", "federated")),
    "replay": ("simulation.replay.stage:replay_stage", ("cache", "redis", "monitoring")),
    "report": ("simulation.report.run_report:report_stage", ()),
}


# Keys whose first reader is a later stage than their section's (a sweep over one reruns only
# from there; tests/test_sweep.py pins that no earlier stage reads them).
KEY_STAGES = {"federated.analytics_refresh_days": "replay"}


def first_stage_reading(key: str) -> str:
    """The first pipeline stage that reads config `key` ("section.key", or a whole section; the
    first stage for unknown ones)."""
    if key in KEY_STAGES:
        return KEY_STAGES[key]
    section = key.split(".", 1)[0]
    return next((name for name, (_, sections) in STAGES.items() if section in sections), next(iter(STAGES)))


def load_stage(name: str) -> Stage:
    module, func = STAGES[name][0].split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


STAGE_ORDER = tuple(STAGES)


def run_stage(name: str, ctx: StageContext) -> dict[str, Any]:
    """Run one stage, time it, merge its output into ctx.results and save results.json."""
    with interrupts.stage(name):
        log.info("stage %s started", name)
        impl = load_stage(name)
        t0 = time.perf_counter()
        metrics.set_stage_progress(name, 0.0)
        out = impl(ctx)
        metrics.set_stage_progress(name, 1.0)
    ctx.results.setdefault("timings", {})[f"{name}_s"] = round(time.perf_counter() - t0, 3)
    for key, value in out.items():
        if isinstance(value, dict) and isinstance(ctx.results.get(key), dict):
            ctx.results[key].update(value)
        else:
            ctx.results[key] = value
    ctx.run.write_results(ctx.results)
    return out


def run_pipeline(ctx: StageContext, stages: tuple[str, ...] = STAGE_ORDER) -> None:
    """Run `stages` in order, saving results.json after each."""
    ctx.run.save_config(ctx.cfg)
    ctx.results.setdefault("config", ctx.cfg.public_dict())
    if ctx.cfg.workload.source == "generate":  # edges are known up front: export zeros now, so
        for i in range(ctx.cfg.workload.edges):  # rates over a run's first samples are defined
            metrics.init_edge(f"edge-{i:02d}", ctx.cfg.cache.policies, DEVICES)
    t0 = time.perf_counter()
    for name in stages:
        ctx.console.rule(f"[bold]{name}")
        run_stage(name, ctx)
    ctx.results.setdefault("timings", {})["total_s"] = round(time.perf_counter() - t0, 3)
    ctx.run.write_results(ctx.results)

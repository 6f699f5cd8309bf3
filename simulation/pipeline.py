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


# Stage name -> "module:function", in pipeline order. Imported lazily because Spark and Ray are
# heavy and a single-stage command needs only its own.
STAGES: dict[str, str] = {
    "generate": "simulation.workload.stage:generate_stage",
    "features": "simulation.features_stage:features_stage",
    "train": "simulation.training.stage:train_stage",
    "replay": "simulation.replay.stage:replay_stage",
    "report": "simulation.report.run_report:report_stage",
}


def load_stage(name: str) -> Stage:
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


STAGE_ORDER = tuple(STAGES)


def run_stage(name: str, ctx: StageContext) -> dict[str, Any]:
    """Run one stage, time it, merge its output into ctx.results and save results.json."""
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
    ctx.results.setdefault("config", ctx.cfg.to_dict())
    if ctx.cfg.workload.source == "generate":  # edges are known up front: export zeros now, so
        for i in range(ctx.cfg.workload.edges):  # rates over a run's first samples are defined
            metrics.init_edge(f"edge-{i:02d}", ctx.cfg.cache.policies, DEVICES)
    t0 = time.perf_counter()
    for name in stages:
        ctx.console.rule(f"[bold]{name}")
        run_stage(name, ctx)
    ctx.results.setdefault("timings", {})["total_s"] = round(time.perf_counter() - t0, 3)
    ctx.run.write_results(ctx.results)

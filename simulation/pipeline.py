"""The pipeline: stages in order, each reading and writing one run directory.

A stage is a function `(StageContext) -> dict` whose dict is merged into results.json. A
stage whose capability has not landed raises `NotImplementedYet`; `edgecache run` then says
so and stops before the stages that depend on it (never a fake success).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from monitoring import metrics
from simulation.config import ExperimentConfig
from simulation.errors import NotImplementedYet
from simulation.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    cfg: ExperimentConfig
    run: RunDir
    console: Console
    results: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[StageContext], dict[str, Any]]


# Stage name -> "module:function", in pipeline order; None = not landed yet. Imported lazily
# because Spark and Ray are heavy and a single-stage command needs only its own.
STAGES: dict[str, str | None] = {
    "generate": "simulation.workload.stage:generate_stage",
    "features": "simulation.features_stage:features_stage",
    "train": "simulation.training.stage:train_stage",
    "replay": "simulation.replay.stage:replay_stage",
    "report": "simulation.report.run_report:report_stage",
}


def load_stage(name: str) -> Stage:
    target = STAGES[name]
    if target is None:
        raise NotImplementedYet(f"`{name}` is not implemented yet")
    module, func = target.split(":")
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


def run_pipeline(ctx: StageContext, stages: tuple[str, ...] = STAGE_ORDER) -> list[str]:
    """Run `stages` in order; return the ones that have not landed (the run stops at the first)."""
    ctx.run.save_config(ctx.cfg)
    ctx.results.setdefault("config", ctx.cfg.to_dict())
    if ctx.cfg.workload.source == "generate":  # edges are known up front: export zeros now, so
        for i in range(ctx.cfg.workload.edges):  # rates over a run's first samples are defined
            metrics.init_edge(f"edge-{i:02d}", ctx.cfg.cache.policies)
    t0 = time.perf_counter()
    missing: list[str] = []
    for name in stages:
        if missing:
            missing.append(name)
            continue
        ctx.console.rule(f"[bold]{name}")
        try:
            run_stage(name, ctx)
        except NotImplementedYet as e:
            ctx.console.print(f"[yellow]{e}: stopping here; later stages need its output")
            missing.append(name)
    ctx.results.setdefault("timings", {})["total_s"] = round(time.perf_counter() - t0, 3)
    ctx.results["stages_not_implemented"] = missing
    ctx.run.write_results(ctx.results)
    return missing

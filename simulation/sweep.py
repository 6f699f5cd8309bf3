"""Sweeps: run one experiment at several values of one config key, then report them together.

A sweep file is a normal experiment file plus a `[sweep]` table:

    [sweep]
    base = "default.toml"            # optional: experiment file to start from (relative path)
    key = "cache.capacity"           # any config key, as for --set
    values = [25, 50, 100, 200, 400]
    reuse = true                     # optional (default true): share upstream stages

Sections written in the sweep file override the base; `--set` overrides both. `[sweep]` is
taken out before the config is built, so each point's resolved config (and results.json) is a
plain experiment that `edgecache run --config DIR/point-<i>/config.toml` reproduces, and every
point is validated before anything runs.

Reuse: a key only affects the stages from the one that first reads its section (cache.* ->
replay, federated.*/model.* -> train, features.*/split.* -> features, workload.*/run.* ->
everything). The stages before that run once into DIR/shared/; each DIR/point-<i>/ links the
shared artifacts and runs only the rest. A cache-size sweep therefore generates, builds
features and trains once, and replays per capacity.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from simulation.config import ExperimentConfig, _parse_override, build_config
from simulation.errors import ConfigError, EdgecacheError
from simulation.pipeline import STAGE_ORDER, StageContext, first_stage_reading, run_pipeline
from simulation.rundir import RunDir

log = logging.getLogger(__name__)

SWEEP_KEYS = ("base", "key", "values", "reuse")
# The first pipeline stage that reads each config section.
NOT_SHARED = {"config.toml", "results.json", "results.json.tmp", "report.html", "report.md"}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base experiment (raw TOML dict), the key and its values."""

    path: Path
    raw: dict[str, Any]
    key: str
    values: tuple[Any, ...]
    reuse: bool = True

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    def point_raw(self, i: int) -> dict[str, Any]:
        """The raw config of point i: the base with the swept key set and a per-point name."""
        raw = copy.deepcopy(self.raw)
        section, name = self.key.split(".", 1)
        raw.setdefault(section, {})[name] = self.values[i]
        run = raw.setdefault("run", {})
        run["name"] = f"{run.get('name', 'sweep')}-point-{i}"
        return raw

    def point_config(self, i: int) -> ExperimentConfig:
        """Point i's validated config; errors name the point and the value."""
        try:
            return build_config(self.point_raw(i))
        except ConfigError as e:
            raise ConfigError(f"{self.path} point {i} ({self.key} = {self.values[i]!r}): {e}") from e

    def base_config(self) -> ExperimentConfig:
        return build_config(copy.deepcopy(self.raw))


@dataclass
class SweepResult:
    """Where the combined outputs went and what each point produced."""

    root: Path
    points: list[dict[str, Any]] = field(default_factory=list)
    html: Path | None = None
    json: Path | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["status"] != "ok"]


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found; pass an experiments/sweep_*.toml file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for section, values in over.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = copy.deepcopy(values)
    return out


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Parse a sweep file (experiment + [sweep]); validate every point before anything runs."""
    path = Path(path)
    raw = _read_toml(path)
    table = raw.pop("sweep", None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [sweep] table; a sweep file is an experiment plus "
                          "[sweep] key = \"section.key\", values = [...] (for one run use `edgecache run`)")
    unknown = sorted(set(table) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key sweep.{unknown[0]}; allowed keys in [sweep]: {', '.join(SWEEP_KEYS)}")
    key, values = table.get("key"), table.get("values")
    if not isinstance(key, str) or key.count(".") != 1:
        raise ConfigError(f"sweep.key must be a dotted config key such as \"cache.capacity\", got {key!r}")
    if not isinstance(values, list) or not values or len({repr(v) for v in values}) != len(values):
        raise ConfigError(f"sweep.values must be a non-empty list of distinct values, got {values!r}")
    if "base" in table:
        raw = _merge(_read_toml(path.parent / str(table["base"])), raw)
    for item in overrides or []:
        section, name, value = _parse_override(item)
        raw.setdefault(section, {})[name] = value
    spec = SweepSpec(path, raw, key, tuple(values), bool(table.get("reuse", True)))
    for i in range(len(spec.values)):
        spec.point_config(i)
    return spec


def plan_stages(key: str, reuse: bool, stages: tuple[str, ...] = STAGE_ORDER) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(stages run once and shared, stages run per point) for a sweep over `key`."""
    first = first_stage_reading(key)
    cut = stages.index(first) if reuse and first in stages else 0
    return stages[:cut], stages[cut:]


def link_shared(shared: Path, point: Path) -> None:
    """Make the shared stages' artifacts visible in a point's run directory (relative symlinks)."""
    point.mkdir(parents=True, exist_ok=True)
    for entry in sorted(shared.iterdir()):
        target = point / entry.name
        if entry.name in NOT_SHARED or target.exists() or target.is_symlink():
            continue
        target.symlink_to(os.path.relpath(entry, point), target_is_directory=entry.is_dir())


Pipeline = Callable[[StageContext, tuple[str, ...]], None]


def _overall(results: dict[str, Any], metric: str) -> dict[str, float]:
    return {p: v["overall"][metric] for p, v in (results.get("policies") or {}).items()
            if isinstance(v, dict) and isinstance(v.get("overall"), dict) and metric in v["overall"]}


def _seed(shared: dict[str, Any], spec: SweepSpec, i: int, shared_stages: tuple[str, ...]) -> dict[str, Any]:
    """A point's starting results: what the shared stages produced, plus where it sits in the sweep."""
    results = {k: copy.deepcopy(v) for k, v in shared.items() if k != "config"}
    results.get("timings", {}).pop("total_s", None)
    results["sweep"] = {"key": spec.key, "value": spec.values[i], "index": i,
                        "shared_stages": list(shared_stages), "shared_dir": "../shared" if shared_stages else None}
    return results


def run_point(spec: SweepSpec, i: int, root: Path, console: Console, shared: dict[str, Any],
              stages: tuple[tuple[str, ...], tuple[str, ...]], pipeline: Pipeline) -> dict[str, Any]:
    """Run point i's own stages in DIR/point-<i>/ on top of the shared artifacts."""
    shared_stages, point_stages = stages
    record: dict[str, Any] = {"index": i, "value": spec.values[i], "dir": f"point-{i}"}
    run = RunDir(root / f"point-{i}").create()
    if shared_stages:
        link_shared(root / "shared", run.root)
    ctx = StageContext(spec.point_config(i), run, console, _seed(shared, spec, i, shared_stages))
    console.rule(f"[bold]sweep point {i}: {spec.key} = {spec.values[i]!r}")
    try:
        pipeline(ctx, point_stages)
    except EdgecacheError as e:
        log.error("sweep point %d (%s = %r) failed: %s", i, spec.key, spec.values[i], e)
        return {**record, "status": "error", "error": str(e), "hit_ratio": {}, "origin_bytes": {}}
    return {**record, "status": "ok", "hit_ratio": _overall(ctx.results, "hit_ratio"),
            "origin_bytes": _overall(ctx.results, "origin_bytes")}


def curves_of(spec: SweepSpec, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Hit ratio per policy at each swept value (None where a point has no result)."""
    names = list(dict.fromkeys(p for pt in points for p in pt["hit_ratio"]))
    return {"values": list(spec.values),
            "policies": {n: [pt["hit_ratio"].get(n) for pt in points] for n in names},
            "origin_bytes": {n: [pt.get("origin_bytes", {}).get(n) for pt in points] for n in names}}


def fill_capacity_sweep(spec: SweepSpec, root: Path, points: list[dict[str, Any]], curves: dict[str, Any]) -> None:
    """Give every finished point of a cache-size sweep the capacity curve, and re-render its report."""
    unit = spec.base_config().cache.capacity_unit
    _fill(root, points, "capacity_sweep",
          {"capacities": curves["values"], "unit": unit, "policies": curves["policies"]})


def fill_budget_sweep(root: Path, points: list[dict[str, Any]], curves: dict[str, Any]) -> None:
    """Give every finished point of a prefetch-budget sweep the hit-ratio/origin-bytes frontier."""
    _fill(root, points, "budget_sweep", {"budgets": curves["values"], "hit_ratio": curves["policies"],
                                         "origin_bytes": curves["origin_bytes"]})


def _fill(root: Path, points: list[dict[str, Any]], key: str, sweep: dict[str, Any]) -> None:
    """Store `sweep` under results[key] of every finished point and re-render its report."""
    from simulation.report.run_report import write_report_for  # matplotlib only when reporting

    for pt in points:
        if pt["status"] != "ok":
            continue
        run = RunDir(root / pt["dir"])
        results = run.read_results()
        results[key] = sweep
        run.write_results(results)
        write_report_for(run, results)


def run_sweep(spec: SweepSpec, out: Path | None, console: Console,
              pipeline: Pipeline = run_pipeline) -> SweepResult:
    """Run the shared stages once, every point's own stages, then write sweep.json and sweep.html."""
    from simulation.report.sweep_page import write_sweep_report

    base = spec.base_config()
    root = Path(out) if out else Path(base.run.out_dir) / base.run.name
    stages = plan_stages(spec.key, spec.reuse)
    shared: dict[str, Any] = {}
    if stages[0]:
        ctx = StageContext(spec.point_config(0), RunDir(root / "shared").create(), console)
        console.rule(f"[bold]sweep: shared stages {', '.join(stages[0])} (run once)")
        pipeline(ctx, stages[0])
        shared = ctx.results
    result = SweepResult(root)
    for i in range(len(spec.values)):
        result.points.append(run_point(spec, i, root, console, shared, stages, pipeline))
    curves = curves_of(spec, result.points)
    if spec.key == "cache.capacity":
        fill_capacity_sweep(spec, root, result.points, curves)
    elif spec.key == "cache.prefetch_budget":
        fill_budget_sweep(root, result.points, curves)
    summary = {"key": spec.key, "values": list(spec.values), "sweep_file": str(spec.path),
               "shared_stages": list(stages[0]), "point_stages": list(stages[1]),
               "points": result.points, "curves": curves}
    result.json = root / "sweep.json"
    result.json.write_text(json.dumps(summary, indent=2) + "\n")
    result.html = write_sweep_report(root, summary)
    return result

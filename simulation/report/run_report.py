"""The run report: report.html (self-contained) and report.md, from results.json alone.

`write_report(run_dir)` is what `edgecache report DIR` calls; `report_stage` is the pipeline's
last stage. Both render the same sections, so a report regenerated later from results.json
is byte-identical to one written by the same results (no timestamps, deterministic PNGs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulation.errors import RunDirError
from simulation.pipeline import StageContext
from simulation.report.federated import failures_section, federated_section
from simulation.report.html import render_page
from simulation.report.markdown import render_markdown
from simulation.report.model import Section
from simulation.report.policies import overall_verdict, policy_sections
from simulation.report.sections import (
    capacity_section,
    config_section,
    quality_section,
    static_section,
    summary_section,
    timings_section,
    workload_section,
)
from simulation.report.tradeoff import calibration_section, timeline_section, tradeoff_section
from simulation.rundir import RunDir

log = logging.getLogger(__name__)

SECTION_IDS = ("summary", "configuration", "workload", "policies", "per-edge", "origin-tradeoff", "timeline",
               "calibration",
               "capacity",
               "federated", "static-efficiency", "prediction-quality", "failures", "timings")


def build_sections(results: Mapping[str, Any]) -> list[Section]:
    """Every report section, in reading order; absent data becomes a 'not in this run' note."""
    policies = results.get("policies") or {}
    return [
        summary_section(results, overall_verdict(policies)),
        config_section(results),
        workload_section(results),
        *policy_sections(results),
        tradeoff_section(results),
        timeline_section(results),
        calibration_section(results),
        capacity_section(results),
        federated_section(results),
        static_section(results),
        quality_section(results),
        failures_section(results),
        timings_section(results),
    ]


def _title(results: Mapping[str, Any]) -> tuple[str, str]:
    name = ((results.get("config") or {}).get("run") or {}).get("name") or "unnamed run"
    return (f"edgecache report — {name}",
            "Edge-based predictive caching with federated learning: every cache policy replayed "
            "on the same per-edge test stream. Regenerate with `edgecache report DIR`.")


def render_report(results: Mapping[str, Any]) -> tuple[str, str]:
    """(report.html, report.md) text for one results dict."""
    title, subtitle = _title(results)
    sections = build_sections(results)
    return render_page(title, subtitle, sections), render_markdown(title, subtitle, sections)


def write_report_for(run: RunDir, results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write report.html and report.md for `results` into the run directory."""
    page, md = render_report(results)
    run.create()
    run.report_html.write_text(page, encoding="utf-8")
    run.report_md.write_text(md, encoding="utf-8")
    log.info("report written: %s, %s", run.report_html, run.report_md)
    return run.report_html, run.report_md


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Regenerate report.html and report.md from DIR/results.json alone."""
    run = RunDir(Path(run_dir))
    if not run.root.is_dir():
        raise RunDirError(f"{run.root} is not a directory; pass a run directory made by `edgecache run`")
    try:
        results = run.read_results()
    except ValueError as e:
        raise RunDirError(f"{run.results} is not valid JSON ({e}); re-run `edgecache run`") from e
    return write_report_for(run, results)


def report_stage(ctx: StageContext) -> dict[str, Any]:
    """Pipeline stage: write the report from the results so far; adds nothing to results.json."""
    write_report_for(ctx.run, ctx.results)
    ctx.console.print(f"report: {ctx.run.report_html}")
    return {}

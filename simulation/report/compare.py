"""Compare runs side by side: policies x runs, per-edge deltas against the first run.

`edgecache compare A B ...` prints the tables in the terminal (rich) and writes a
self-contained compare.html. Both render the same `Table` values built here from each run's
results.json.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from simulation.errors import RunDirError
from simulation.report import plots
from simulation.report.html import render_page
from simulation.report.model import (
    Block,
    Figure,
    Note,
    Section,
    Table,
    fmt_delta,
    fmt_ratio,
    fmt_value,
    is_number,
)
from simulation.report.policies import edges_of, hit, overall_verdict
from simulation.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """One run's results.json and the label it is shown under."""

    label: str
    path: Path
    results: Mapping[str, Any]

    @property
    def policies(self) -> Mapping[str, Any]:
        return self.results.get("policies") or {}


def load_runs(dirs: Sequence[Path]) -> list[RunResult]:
    """Read each run's results.json; labels are folder names, made unique when they clash."""
    if len(dirs) < 2:
        raise RunDirError("compare needs two or more run directories, e.g. `edgecache compare runs/a runs/b`")
    names = [Path(d).name or str(d) for d in dirs]
    labels = [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs, strict=True)]
    runs = []
    for label, d in zip(labels, dirs, strict=True):
        try:
            results = RunDir(Path(d)).read_results()
        except ValueError as e:
            raise RunDirError(f"{Path(d) / 'results.json'} is not valid JSON ({e})") from e
        runs.append(RunResult(label, Path(d), results))
    return runs


def all_policies(runs: Sequence[RunResult]) -> list[str]:
    """Every policy any run reports, canonical order."""
    return plots.order_policies(list(dict.fromkeys(p for r in runs for p in r.policies)))


def _delta(value: Any, base: Any) -> Any:
    return value - base if is_number(value) and is_number(base) else None


def overall_table(runs: Sequence[RunResult]) -> Table:
    """Overall hit ratio per policy (rows) and run (columns), with the delta vs the first run."""
    base = runs[0]
    rows = []
    for p in all_policies(runs):
        cells = [fmt_ratio(hit(base.policies, p))]
        for r in runs[1:]:
            v, d = hit(r.policies, p), _delta(hit(r.policies, p), hit(base.policies, p))
            cells.append(fmt_ratio(v) + (f" ({fmt_delta(d)})" if d is not None else ""))
        rows.append((p, *cells))
    return Table(("policy", *(r.label for r in runs)), tuple(rows),
                 f"Overall hit ratio; in brackets the difference from {base.label} in percentage points.")


def edge_delta_table(base: RunResult, other: RunResult) -> Table:
    """Per-edge hit-ratio difference of `other` minus `base`, per policy."""
    edges = sorted(set(edges_of(base.policies)) | set(edges_of(other.policies)))
    rows = tuple((p, fmt_delta(_delta(hit(other.policies, p), hit(base.policies, p))),
                  *(fmt_delta(_delta(hit(other.policies, p, e), hit(base.policies, p, e))) for e in edges))
                 for p in all_policies([base, other]))
    return Table(("policy", "all edges", *edges), rows,
                 f"Hit ratio of {other.label} minus {base.label}, per edge (— = edge or policy missing in one run).")


def config_diff_table(runs: Sequence[RunResult]) -> Table | None:
    """Config keys whose values differ between the runs."""
    flat = [{f"{s}.{k}": v for s, vals in (r.results.get("config") or {}).items()
             if isinstance(vals, Mapping) for k, v in vals.items()} for r in runs]
    keys = sorted({k for f in flat for k in f if len({repr(g.get(k)) for g in flat}) > 1})
    if not keys:
        return None
    return Table(("key", *(r.label for r in runs)),
                 tuple((k, *(fmt_value(f.get(k, "—")) for f in flat)) for k in keys),
                 "Configuration keys that differ between the runs.")


def compare_sections(runs: Sequence[RunResult]) -> list[Section]:
    """The compare page: runs and their differences, overall table and chart, per-edge deltas."""
    listing = Table(("run", "directory", "verdict"),
                    tuple((r.label, str(r.path), overall_verdict(r.policies)) for r in runs))
    diff = config_diff_table(runs)
    run_blocks: list[Block] = [listing, diff if diff else Note("The runs have identical configurations.")]
    if not any(r.policies for r in runs):
        return [Section("runs", "Runs", tuple(run_blocks)),
                Section("overall", "Overall hit ratio", (Note("No policy results in these runs."),))]
    series = {r.label: [hit(r.policies, p) for p in all_policies(runs)] for r in runs}
    png = plots.grouped_bars(all_policies(runs), series, "hit ratio", "Overall hit ratio by policy and run")
    edge_blocks = tuple(edge_delta_table(runs[0], r) for r in runs[1:])
    return [
        Section("runs", "Runs", tuple(run_blocks)),
        Section("overall", "Overall hit ratio", (overall_table(runs),
                                                  Figure("compare_overall", png, "Overall hit ratio per policy, one bar per run"))),
        Section("per-edge", f"Per-edge deltas vs {runs[0].label}", edge_blocks),
    ]


def write_compare_html(runs: Sequence[RunResult], out_dir: Path) -> Path:
    """Write the self-contained compare.html into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "compare.html"
    title = "edgecache compare — " + " vs ".join(r.label for r in runs)
    path.write_text(render_page(title, f"{len(runs)} runs; deltas are against {runs[0].label}.",
                                compare_sections(runs)), encoding="utf-8")
    log.info("compare page written: %s", path)
    return path


def _style(cell: str) -> str:
    if "+" in cell and "pp" in cell and "+0.0 pp" not in cell:
        return "green"
    if "-" in cell and "pp" in cell and "-0.0 pp" not in cell:
        return "red"
    return ""


def rich_table(t: Table) -> RichTable:
    """A terminal table from a report Table (caption printed apart), gains green and losses red."""
    out = RichTable(show_lines=False)
    for i, h in enumerate(t.headers):
        out.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in t.rows:
        out.add_row(*(Text(c, style=_style(c)) for c in row))
    return out


def print_comparison(runs: Sequence[RunResult], console: Console) -> None:
    """Overall table, then one per-edge delta table per later run."""
    diff = config_diff_table(runs)
    tables = [t for t in (diff, overall_table(runs)) if t is not None]
    for t in [*tables, *(edge_delta_table(runs[0], r) for r in runs[1:])]:
        console.print(Text(t.caption, style="bold"))
        console.print(rich_table(t))

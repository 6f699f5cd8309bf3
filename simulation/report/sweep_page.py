"""The combined sweep report: sweep.html (self-contained) and sweep.md from sweep.json's values.

Hit ratio against the swept value, one line per policy (grouped bars when the values are not
numbers, e.g. strategies), and one row per point with its status, so an unfinished point is
visible rather than silently missing from the curves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulation.report import plots
from simulation.report.html import render_page
from simulation.report.markdown import render_markdown
from simulation.report.model import Block, Figure, Note, Section, Table, fmt_ratio, fmt_value, is_number
from simulation.report.policies import ONLINE_REACTIVE
from simulation.report.tradeoff import frontier_blocks


def _value_label(v: Any) -> str:
    return f"{v:g}" if is_number(v) else str(v)


def points_table(summary: Mapping[str, Any]) -> Table:
    """One row per point: value, status, federated / best reactive / belady hit ratio."""
    rows = []
    for pt in summary["points"]:
        hits = pt.get("hit_ratio") or {}
        reactive = [(hits[p], p) for p in ONLINE_REACTIVE if is_number(hits.get(p))]
        best = max(reactive) if reactive else None
        status = pt["status"] + (f": {pt['error']}" if pt.get("error") else "")
        rows.append((str(pt["index"]), _value_label(pt["value"]), pt["dir"], status,
                     fmt_ratio(hits.get("federated")),
                     f"{best[1]} {fmt_ratio(best[0])}" if best else "—", fmt_ratio(hits.get("belady"))))
    return Table(("point", summary["key"], "run directory", "status", "federated", "best reactive", "belady"),
                 tuple(rows), "Every point of the sweep; each directory holds a full run with its own report.")


def curves_blocks(summary: Mapping[str, Any]) -> tuple[Block, ...]:
    """The hit-ratio-vs-value figure and its table, or a note when no point finished."""
    curves = summary["curves"]
    series = {p: curves["policies"][p] for p in plots.order_policies(list(curves["policies"]))}
    if not series:
        return (Note("No point produced policy results yet, so there is no curve."),)
    values = list(curves["values"])
    labels = [_value_label(v) for v in values]
    title = f"Hit ratio vs {summary['key']}"
    if all(is_number(v) for v in values):
        png = plots.curves(values, series, summary["key"], "hit ratio", title)
    else:
        png = plots.grouped_bars(labels, series, "hit ratio", title)
    table = Table(("policy", *labels), tuple((p, *(fmt_ratio(v) for v in ys)) for p, ys in series.items()),
                  f"Overall hit ratio per policy at each value of {summary['key']}.")
    return (Figure("sweep_curves", png, f"Hit ratio against {summary['key']}, one series per policy"), table)


def sweep_sections(summary: Mapping[str, Any]) -> list[Section]:
    """What was swept and how, the curves, the points."""
    shared = summary.get("shared_stages") or []
    how = (f"Sweep over `{summary['key']}` with values {fmt_value(summary['values'])}. "
           + (f"Stages {', '.join(shared)} ran once in shared/ and every point reuses them; each point ran "
              f"{', '.join(summary['point_stages'])}." if shared else
              f"Every point ran all stages ({', '.join(summary['point_stages'])})."))
    sections = [
        Section("sweep", "Sweep", (how, points_table(summary))),
        Section("curves", "Hit ratio vs swept value", curves_blocks(summary)),
    ]
    if summary["key"] == "cache.prefetch_budget":
        curves = summary["curves"]
        bs = {"budgets": curves["values"], "hit_ratio": curves["policies"], "origin_bytes": curves.get("origin_bytes")}
        sections.append(Section("frontier", "Hit ratio against origin traffic", frontier_blocks(bs)))
    return sections


def write_sweep_report(root: Path, summary: Mapping[str, Any]) -> Path:
    """Write sweep.html and sweep.md into the sweep directory; return the HTML path."""
    title = f"edgecache sweep — {summary['key']}"
    subtitle = f"{len(summary['points'])} points from {summary.get('sweep_file', 'a sweep file')}."
    sections = sweep_sections(summary)
    path = root / "sweep.html"
    path.write_text(render_page(title, subtitle, sections), encoding="utf-8")
    (root / "sweep.md").write_text(render_markdown(title, subtitle, sections, "sweep.html"), encoding="utf-8")
    return path

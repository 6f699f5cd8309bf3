"""The generate stage: the generator or a real trace writes the run's logs, then a summary.

`workload.source` picks the source: "generate" (simulation/workload/generate.py) or "ingest"
(a jsonl/csv/MovieLens trace, simulation/workload/ingest.py). Both write the same layout; an
ingested trace also writes its own span to span.json (simulation/span.py), which the split uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from simulation.pipeline import StageContext
from simulation.span import GENERATOR, Span, check_test_days, write_span
from simulation.workload.generate import generate
from simulation.workload.ingest import ingest, parse_mapping


def generate_stage(ctx: StageContext) -> dict[str, Any]:
    """Pipeline stage: generate (or ingest, when workload.source = 'ingest') and summarize."""
    if ctx.cfg.workload.source == "ingest":
        return ingest_stage(ctx)
    summary = {**generate(ctx.cfg, ctx.run), "trace": GENERATOR}
    ctx.console.print(summary_table(summary, f"workload: {ctx.run.root}"))
    return {"workload": summary}


def ingest_stage(ctx: StageContext) -> dict[str, Any]:
    """Pipeline stage for workload.source = 'ingest': read the trace, write the run layout."""
    w = ctx.cfg.workload
    summary = ingest(Path(w.ingest_path), w.ingest_format, ctx.run.root, mapping=parse_mapping(w.ingest_map),
                     n_edges=w.edges, fmt=w.format, test_days=ctx.cfg.split.days_in)
    ctx.console.print(summary_table(summary, f"ingested {w.ingest_format}: {w.ingest_path}"))
    span = Span(summary["start_date"], summary["days"], summary["trace"])
    write_span(ctx.run, span)  # the trace's span, whatever its length: the split is cut from it
    ctx.console.print(f"span: {span.days:,} days from {span.start_date} (span.json)")
    check_test_days(ctx.cfg.split, span)
    return {"workload": summary}


def summary_table(s: dict[str, Any], title: str) -> Group:
    """The short rich summary `edgecache generate` and `edgecache ingest` print."""
    dirty = s.get("dirty_injected")
    per_edge = Table(title=title)
    per_edge.add_column("edge")
    per_edge.add_column("events", justify="right")
    if dirty is not None:
        per_edge.add_column("dirty lines", justify="right")
    for edge, n in s["events_per_edge"].items():
        extra = [f"{sum(dirty['per_edge'].get(edge, {}).values()):,}"] if dirty is not None else []
        per_edge.add_row(edge, f"{n:,}", *extra)
    per_edge.add_section()
    per_edge.add_row("total", f"{s['events']:,}", *([f"{dirty['total']:,}"] if dirty is not None else []))
    facts = Table(show_header=False, box=None)
    rows = [("users", f"{s['users']:,}"), ("items", f"{s['items']:,}"),
            ("popularity skew", f"Zipf exponent {s['zipf_exponent']}, top-1% items get {s['top1pct_share']:.1%}"),
            ("sequential continuations", f"{s['continuation_share']:.1%} of events"),
            ("edge popularity divergence", f"mean pairwise Jensen-Shannon {s['mean_pairwise_jsd']} bits")]
    if "ingest_quarantined" in s:
        rows.append(("quarantined input lines", f"{s['ingest_quarantined']:,}"))
    for key, value in rows:
        facts.add_row(key, value)
    return Group(per_edge, facts)

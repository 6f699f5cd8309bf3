"""The bench report: a rich table on the terminal, bench.md and the scale plot (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.harness import figures_of, write_json

COLUMNS = ("bench", "figure", "value", "unit", "baseline", "baseline_value", "ratio", "note")
SHOWN = ("bench", "figure", "value", "baseline", "baseline value", "ratio")
SCALE_NOTE = """\
Which stages the sweep covers, and why: `make bench` must finish in under 20 minutes on this
2-core machine, and the default experiment alone takes about 4 minutes of it. The events axis runs
generate + features (the two stages whose cost is per event) at 0.25M, 1M and 4M events, and at
16M generate always and the Spark job only with `--scale-16m` (it alone took 330 s here,
which would take the suite past 20); without it the 16M features time is extrapolated below from
the marginal cost between the two largest measured points. Users grow with events (250 events per
user), so a bigger point is a bigger service with the same viewing habits. The edges axis runs
generate + features + 2 federated rounds (no baselines, no personalization) at 250k events: the
same data split over more edges, so any growth is per-edge overhead (Spark partitions and files per
edge, one Ray actor turn per ClientApp). Train and replay per event are covered by the federated
and replay benchmarks and by the end-to-end run."""


def write_report(payload: dict[str, Any], json_path: Path, out_dir: Path) -> Path:
    """bench.json, the scale plot (if the sweep ran) and bench.md; returns bench.md's path."""
    plot = plot_scale(payload["results"].get("scale", {}), out_dir / "scale.png")
    write_json(json_path, payload)
    md = out_dir / "bench.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown(payload, plot))
    return md


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """Every figure with its same-run baseline and the ratio, then each benchmark's cost."""
    console = console or Console()
    table = Table(title="edgecache benchmarks (ratio = value / baseline, same run)", show_lines=False)
    for col in SHOWN:
        table.add_column(col, justify="right" if col in ("value", "baseline value", "ratio") else "left",
                         no_wrap=col in ("bench", "ratio"))
    for r in figures_of(results):
        unit = f" {r['unit']}" if r.get("unit") else ""
        table.add_row(r["bench"], r["figure"], _fmt(r["value"]) + unit, r["baseline"],
                      _fmt(r["baseline_value"]) + unit, _fmt(r["ratio"]))
    console.print(table)
    cost = Table(title="benchmark subprocesses")
    for col in ("bench", "wall s", "peak RSS MB (tree)", "status"):
        cost.add_column(col)
    for name, res in results.items():
        status = "ok" if "error" not in res else f"[red]{res['error'].splitlines()[0][:80]}"
        cost.add_row(name, _fmt(res.get("wall_s", "")), _fmt(res.get("peak_rss_mb", "")), status)
    console.print(cost)


def markdown(payload: dict[str, Any], plot: Path | None) -> str:
    """bench.md: machine and load, the figures table, end-to-end by stage, the scale sweep."""
    results = payload["results"]
    m = payload["machine"]
    lines = [f"# edgecache benchmarks ({payload['mode']})", "",
             f"Measured {payload['started']} on {m['cpus']} CPUs, {m['memory_gb']} GB; load average at "
             f"start {m['load_avg_1_5_15']}, at end {payload.get('load_end')}. The machine is shared: "
             "absolute numbers are noisy, the ratios (baseline measured in the same run) are the figures.",
             f"Total bench wall time: {payload['wall_s']:.0f} s.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in figures_of(results)]
    lines += ["", "| bench | wall s | peak RSS MB (process tree) | status |", "|---|---|---|---|"]
    for name, res in results.items():
        status = "ok" if "error" not in res else "FAILED: " + res["error"].splitlines()[0]
        lines.append(f"| {name} | {_fmt(res.get('wall_s'))} | {_fmt(res.get('peak_rss_mb'))} | {status} |")
    lines += _e2e_section(results.get("e2e", {}))
    lines += _scale_section(results.get("scale", {}), plot)
    return "\n".join(lines) + "\n"


def _e2e_section(e2e: dict[str, Any]) -> list[str]:
    timings = e2e.get("timings")
    if not timings:
        return []
    total = float(timings["total_s"])
    stages = {k[:-2]: float(v) for k, v in timings.items() if k.endswith("_s") and k != "total_s"
              and not k.startswith("train_round")}
    top = max(stages, key=lambda s: stages[s])
    out = ["", "## End to end by stage", "",
           f"`{e2e.get('config')}` {' '.join(e2e.get('overrides', []))}: {e2e.get('events'):,} events, "
           f"pipeline total {total:.1f} s. Dominant stage: **{top}** ({stages[top] / total:.0%} of the time).", "",
           "| stage | seconds | share | peak RSS MB (tree) | biggest processes at the peak (MB) |",
           "|---|---|---|---|---|"]
    peaks, tops = e2e.get("stage_peak_rss_mb", {}), e2e.get("stage_peak_processes", {})
    for s, v in stages.items():
        top = ", ".join(f"{name} {mb:,.0f}" for name, mb in tops.get(s, []))
        out.append(f"| {s} | {v:.1f} | {v / total:.0%} | {_fmt(peaks.get(s, float('nan')))} | {top} |")
    return out + _leftovers(tops)


def _scale_section(scale: dict[str, Any], plot: Path | None) -> list[str]:
    points = scale.get("points")
    if not points:
        return []
    out = ["", "## Scale sweep", "", SCALE_NOTE, ""]
    if plot is not None:
        out += [f"![scale sweep]({plot.name})", ""]
    out += _extrapolation(points)
    out += ["| axis | value | stage | stage s | wall s | peak RSS MB |", "|---|---|---|---|---|---|"]
    for p in points:
        for stage, v in p["stages"].items():
            out.append(f"| {p['axis']} | {p['value']:,} | {stage} | {_fmt(float(v['s']))} | "
                       f"{_fmt(float(v['wall_s']))} | {_fmt(float(v['peak_rss_mb']))} |")
        if "error" in p:
            out.append(f"| {p['axis']} | {p['value']:,} | FAILED | {p['error']} | | |")
    return out


def _extrapolation(points: list[dict[str, Any]]) -> list[str]:
    """The features stage at 16M events, from the marginal cost between its two largest points."""
    xy = sorted((p["value"], float(p["stages"]["features"]["s"])) for p in points
                if p["axis"] == "events" and "features" in p["stages"])
    if len(xy) < 2 or xy[-1][0] >= 16_000_000:
        return []
    (x0, y0), (x1, y1) = xy[-2], xy[-1]
    per_m = (y1 - y0) / (x1 - x0) * 1e6
    guess = y1 + per_m * (16_000_000 - x1) / 1e6
    return [f"Features at 16M events (not run): {per_m:.1f} s per extra million events between "
            f"{x0 / 1e6:g}M and {x1 / 1e6:g}M, so about {guess:.0f} s at 16M if it stays linear.", ""]


def _leftovers(tops: dict[str, list[Any]]) -> list[str]:
    """Say when the Spark JVM is still resident during later stages (memory they do not use)."""
    later = [(s, mb) for s in ("train", "replay", "report") for name, mb in tops.get(s, []) if name == "java"]
    if not later:
        return []
    stages = ", ".join(s for s, _ in later)
    return ["", f"The Spark JVM is still resident during {stages} ({max(mb for _, mb in later):,.0f} MB at "
            "those stages' peaks): stopping the SparkSession does not end PySpark's gateway JVM."]


def plot_scale(scale: dict[str, Any], path: Path) -> Path | None:
    """Time and peak RSS vs events (log-log, with a linear reference) and vs edges."""
    points = scale.get("points") or []
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, axis, key, ylabel in ((axes[0], "events", "s", "stage seconds"),
                                  (axes[1], "events", "peak_rss_mb", "peak RSS MB (process tree)"),
                                  (axes[2], "edges", "s", "stage seconds")):
        _plot_axis(ax, points, axis, key)
        ax.set_xlabel(f"{axis} (log)")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log")
        ticks = sorted({p["value"] for p in points if p["axis"] == axis})
        ax.set_xticks(ticks, [f"{t / 1e6:g}M" if axis == "events" else str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_yscale("log" if axis == "events" else "linear")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_title("time vs events (dashed: linear from 1M)")
    axes[1].set_title("memory vs events")
    axes[2].set_title("time vs edges (same events)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_axis(ax: Any, points: list[dict[str, Any]], axis: str, key: str) -> None:
    rows = [p for p in points if p["axis"] == axis]
    stages = dict.fromkeys(s for p in rows for s in p["stages"])
    for stage in stages:
        xy = [(p["value"], float(p["stages"][stage][key])) for p in rows if stage in p["stages"]]
        if not xy:
            continue
        xs, ys = zip(*xy, strict=True)
        (line,) = ax.plot(xs, ys, "o-", label=stage)
        if axis == "events" and key == "s" and 1_000_000 in xs:
            ref = ys[xs.index(1_000_000)]
            ax.plot(xs, [ref * x / 1e6 for x in xs], "--", color=line.get_color(), alpha=0.5)

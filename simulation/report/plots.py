"""Report figures as deterministic PNG bytes (matplotlib, Agg, no pyplot global state).

Fixed sizes, fixed colours per policy, and no Software/date metadata, so the same results
give byte-identical images and therefore a byte-identical report.html.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from simulation.config import ALL_POLICIES  # noqa: E402

Series = Mapping[str, Sequence[float | None]]

DPI = 100
STYLE: Any = {  # rc_context wants literal keys; the values are checked by matplotlib
    "font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8,
    "svg.hashsalt": "edgecache", "figure.autolayout": False,
}
# Reactive policies in cool colours, predictive in warm ones, belady in black.
FIXED_COLORS = {
    "lru": "#4c78a8", "lfu": "#72b7b2", "arc": "#54a24b", "s3fifo": "#88d27a",
    "wtinylfu": "#9ecae9", "belady": "#222222", "belady_prefetch": "#6f6f6f", "popularity": "#b279a2",
    "markov_sql": "#ff9da6", "itemcf": "#d6616b", "local_only": "#eeca3b", "federated": "#e45756", "federated_personalized": "#9d2f2f",
    "centralized": "#f58518",
}
# Offline bounds: drawn hatched or dashed, and named as bounds in every legend.
BOUNDS = {"belady": "belady (offline bound)", "belady_prefetch": "belady_prefetch (offline bound)"}
# For series that are not policies (e.g. runs in a comparison).
EXTRA_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#bab0ac")


def color_of(name: str, extra_index: int = 0) -> str:
    """A stable colour for a policy (or any series name)."""
    return FIXED_COLORS.get(name, EXTRA_COLORS[extra_index % len(EXTRA_COLORS)])


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """Colours for a list of series names; unknown names get the spare colours in order."""
    unknown = [n for n in names if n not in FIXED_COLORS]
    return {n: color_of(n, unknown.index(n) if n in unknown else 0) for n in names}


def order_policies(names: Sequence[str]) -> list[str]:
    """Known policies in the canonical order, then any others alphabetically."""
    known = [p for p in ALL_POLICIES if p in names]
    return known + sorted(n for n in names if n not in ALL_POLICIES)


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes without timestamps or software tags."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _vals(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def grouped_bars(groups: Sequence[str], series: Series, ylabel: str, title: str,
                 size: tuple[float, float] = (11.0, 4.2)) -> bytes:
    """Grouped bars: one group per label on the x axis, one bar per series."""
    with rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI)
        ax = fig.add_subplot()
        names = list(series)
        colors = colors_for(names)
        width = 0.84 / max(len(names), 1)
        for i, name in enumerate(names):
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, _vals(series[name]), width=width, label=BOUNDS.get(name, name), color=colors[name],
                   hatch="//" if name in BOUNDS else None, edgecolor="white", linewidth=0.3)
        ax.set_xticks(range(len(groups)), list(groups), rotation=30 if len(groups) > 14 else 0)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(0, _upper(series))
        ax.legend(ncols=min(len(names), 6), loc="upper center", bbox_to_anchor=(0.5, -0.1),
                  frameon=False)
        fig.subplots_adjust(left=0.07, right=0.99, top=0.92, bottom=0.1 + 0.045 * (len(names) // 6 + 1))
        return to_png(fig)


def _upper(series: Series) -> float:
    top = max((v for vs in series.values() for v in vs if v is not None), default=1.0)
    return min(1.0, top * 1.12) if top <= 1.0 else top * 1.12


def curves(xs: Sequence[Any], series: Series, xlabel: str, ylabel: str, title: str,
           size: tuple[float, float] = (8.0, 4.6)) -> bytes:
    """Lines with markers over a numeric x axis (log scale when it spans 8x or more)."""
    with rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI)
        ax = fig.add_subplot()
        colors = colors_for(list(series))
        for name, ys in series.items():
            ax.plot(list(xs), _vals(ys), marker="o", markersize=4, label=BOUNDS.get(name, name), color=colors[name],
                    linestyle="--" if name in BOUNDS else "-", linewidth=1.5)
        positive = [float(x) for x in xs if float(x) > 0]
        if positive and max(positive) / min(positive) >= 8 and len(positive) == len(xs):
            ax.set_xscale("log")
            ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.subplots_adjust(left=0.09, right=0.8, top=0.92, bottom=0.12)
        return to_png(fig)


def training_curves(rounds: Sequence[int], loss: Sequence[float | None],
                    hit: Sequence[float | None], refs: Mapping[str, Mapping[str, float]],
                    k_label: str = "hit@K") -> bytes:
    """Federated loss and hit@K per round, with baselines as horizontal reference lines."""
    with rc_context(STYLE):
        fig = Figure(figsize=(11.0, 4.0), dpi=DPI)
        panels = ((fig.add_subplot(1, 2, 1), loss, "train_loss", "training loss"),
                  (fig.add_subplot(1, 2, 2), hit, "eval_hit_at_k", f"evaluation {k_label}"))
        for ax, ys, metric, label in panels:
            ax.plot(list(rounds), _vals(ys), marker="o", markersize=4, color=color_of("federated"),
                    label="federated")
            for name, values in refs.items():
                if metric in values:
                    ax.axhline(values[metric], color=color_of(name), linestyle="--",
                               linewidth=1.2, label=f"{name} (reference)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("round")
            ax.set_ylabel(label)
            ax.set_title(f"{label} per round")
            ax.legend(frameon=False)
        fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.14, wspace=0.22)
        return to_png(fig)


Point = tuple[float, float]


def frontier(points: Mapping[str, Point], curves: Mapping[str, Sequence[Point]], xlabel: str, title: str,
             ref_x: float | None = None, labelled: Sequence[str] = (),
             size: tuple[float, float] = (8.5, 5.0)) -> bytes:
    """Hit ratio (y) against origin traffic (x): policies as points (`labelled` ones named), sweeps as curves."""
    with rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI)
        ax = fig.add_subplot()
        colors = colors_for([*points, *curves])
        for name, pts in curves.items():
            xs, ys = zip(*pts, strict=True) if pts else ((), ())
            ax.plot(list(xs), list(ys), marker="o", markersize=4, color=colors[name], label=BOUNDS.get(name, name),
                    linestyle="--" if name in BOUNDS else "-", linewidth=1.5)
        for name, (x, y) in points.items():
            bound = name in BOUNDS
            ax.scatter([x], [y], s=60 if bound else 40, color=colors[name], marker="*" if bound else "o",
                       zorder=3, label=None if name in curves else BOUNDS.get(name, name))
            if name in labelled:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if ref_x is not None:
            ax.axvline(ref_x, color="#888888", linestyle=":", linewidth=1.0, label="best reactive's origin bytes")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("hit ratio")
        ax.set_title(title)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.subplots_adjust(left=0.09, right=0.72, top=0.92, bottom=0.11)
        return to_png(fig)


def over_time(days: Sequence[float], series: Series, title: str, size: tuple[float, float] = (9.0, 4.6)) -> bytes:
    """Cumulative hit ratio per policy against days since the start of the test period."""
    with rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI)
        ax = fig.add_subplot()
        colors = colors_for(list(series))
        for name, ys in series.items():
            ax.plot(list(days), _vals(ys), color=colors[name], label=BOUNDS.get(name, name),
                    linestyle="--" if name in BOUNDS else "-", linewidth=1.4)
        ax.set_xlabel("days since the start of the test period")
        ax.set_ylabel("cumulative hit ratio")
        ax.set_title(title)
        ax.set_ylim(0, _upper(series))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.subplots_adjust(left=0.08, right=0.7, top=0.92, bottom=0.12)
        return to_png(fig)

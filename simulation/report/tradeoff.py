"""Report sections on what the hits cost: hit ratio against origin traffic, and hit ratio over time.

Origin traffic is each policy's `origin_bytes` (misses plus prefetches), shown relative to the
best reactive policy's, so 1.0x is "the origin traffic paid today".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulation.report import plots
from simulation.report.model import (
    Block,
    Figure,
    Note,
    Section,
    Table,
    fmt_bytes,
    fmt_ratio,
    is_number,
    not_in_run,
)
from simulation.report.policies import PREDICTIVE, best_reactive, hit, metric


def origin_of(policies: Mapping[str, Any], name: str) -> Any:
    """A policy's overall origin bytes (misses + prefetches), or None."""
    return metric((policies.get(name) or {}).get("overall"), "origin_bytes")


def relative_points(policies: Mapping[str, Any], ref: float) -> dict[str, plots.Point]:
    """(origin bytes / ref, hit ratio) of every policy that reports both."""
    return {n: (origin_of(policies, n) / ref, hit(policies, n)) for n in plots.order_policies(list(policies))
            if is_number(origin_of(policies, n)) and is_number(hit(policies, n))}


def run_sentence(policies: Mapping[str, Any], best: str, ref: float) -> str:
    """This run's own point: federated's hit ratio and origin traffic against the best reactive policy."""
    fed_o = origin_of(policies, PREDICTIVE)
    if not is_number(hit(policies, PREDICTIVE)) or not is_number(fed_o):
        return f"The best reactive policy is {best} ({hit(policies, best):.1%} at {fmt_bytes(ref)} from the origin)."
    return (f"In this run, federated hits {hit(policies, PREDICTIVE):.1%} at {fed_o / ref:.2f}x the origin bytes "
            f"of the best reactive policy ({best}: {hit(policies, best):.1%}, {fmt_bytes(ref)}); the curve over "
            "prefetch budgets comes from `edgecache sweep --config experiments/sweep_prefetch_budget.toml`.")


def tradeoff_section(results: Mapping[str, Any]) -> Section:
    """Scatter of hit ratio against origin bytes for this run's policies."""
    title = "Hit ratio against origin traffic"
    policies = results.get("policies") or {}
    best = best_reactive(policies)
    ref = origin_of(policies, best) if best else None
    if best is None or not is_number(ref) or not ref:
        return Section("origin-tradeoff", title, (not_in_run("Origin bytes of a reactive policy"),))
    pts = relative_points(policies, float(ref))
    png = plots.frontier(pts, {}, f"origin bytes (x {best}'s, prefetches included)",
                         "Hit ratio against origin traffic, this run", ref_x=1.0,
                         labelled=(best, PREDICTIVE, *plots.BOUNDS))
    rows = tuple((n, fmt_ratio(y), f"{x:.2f}x", fmt_bytes(origin_of(policies, n))) for n, (x, y) in pts.items())
    blocks: list[Block] = [run_sentence(policies, best, float(ref)),
                           Figure("origin_tradeoff", png, "Hit ratio against origin bytes, one point per policy"),
                           Table(("policy", "hit ratio", f"origin bytes vs {best}", "origin bytes"), rows,
                                 "Origin bytes = bytes of misses plus prefetched bytes.")]
    return Section("origin-tradeoff", title, tuple(blocks))


def timeline_section(results: Mapping[str, Any]) -> Section:
    """Cumulative hit ratio over the test period, one line per policy."""
    title = "Hit ratio over the test period"
    tl = results.get("timeline")
    if not isinstance(tl, Mapping) or not tl.get("days") or not tl.get("policies"):
        return Section("timeline", title, (not_in_run("The hit ratio over time"),))
    series = {p: list(tl["policies"][p]) for p in plots.order_policies(list(tl["policies"]))}
    png = plots.over_time(list(tl["days"]), series, "Cumulative hit ratio over the test period")
    first, last = tl["t"][0], tl["t"][-1]
    blocks: tuple[Block, ...] = (
        f"Cumulative hit ratio over all edges, from {first} to {last} (UTC hours); a cold cache starts low.",
        Figure("hit_ratio_over_time", png, "Cumulative hit ratio against time, one line per policy"))
    if len(tl["days"]) < 2:
        blocks += (Note("The test period spans one hour only, so the curve is a single point."),)
    return Section("timeline", title, blocks)

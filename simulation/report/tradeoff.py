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
from simulation.report.policies import ONLINE_REACTIVE, PREDICTIVE, best_reactive, hit, metric


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
    return (f"In this run, federated hits {hit(policies, PREDICTIVE):.1%} at {fed_o / ref:.3f}x the origin bytes "
            f"of the best reactive policy ({best}: {hit(policies, best):.1%}, {fmt_bytes(ref)}); the curve over "
            "prefetch budgets comes from `edgecache sweep --config experiments/sweep_prefetch_budget.toml`.")


def limit_sentence(results: Mapping[str, Any]) -> str:
    """How the run limited prefetching's origin traffic (cache.origin_shadow and its controller)."""
    c = ((results.get("config") or {}).get("cache") or {})
    shadow = c.get("origin_shadow", "none")
    if shadow in (None, "none"):
        return ("No origin limit in this run (cache.origin_shadow = none): predictive policies prefetch within "
                "cache.prefetch_budget and cache.prefetch_price only, and may pay more origin traffic than a reactive cache.")
    gain = c.get("price_gain", 0)
    price = (f"; the prefetch price follows each edge's standing against its shadow (cache.price_gain {gain:g}, "
             f"starting at cache.prefetch_price {c.get('prefetch_price', 0):g})" if is_number(gain) and gain > 0
             else "")
    what = ("every reactive policy (lru, lfu, arc, s3fifo, wtinylfu) with the same capacity on its own requests "
            "(a shadow, paying at each request the least any of them paid so far)" if shadow == "best" else
            f"a {shadow} cache of the same capacity on its own requests (a shadow)")
    return (f"Each edge simulates {what} and prefetches only while its origin bytes, prefetches included, stay "
            f"within {c.get('origin_ratio', 1):g}x the shadow's (cache.origin_shadow, cache.origin_ratio){price}. "
            "Demand misses after the last prefetch can still take an edge slightly past its shadow.")


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
    rows = tuple((n, fmt_ratio(y), f"{x:.3f}x", fmt_bytes(origin_of(policies, n))) for n, (x, y) in pts.items())
    blocks: list[Block] = [run_sentence(policies, best, float(ref)), limit_sentence(results),
                           Figure("origin_tradeoff", png, "Hit ratio against origin bytes, one point per policy"),
                           Table(("policy", "hit ratio", f"origin bytes vs {best}", "origin bytes"), rows,
                                 "Origin bytes = bytes of misses plus prefetched bytes.")]
    if isinstance(results.get("budget_sweep"), Mapping):
        blocks += frontier_blocks(results["budget_sweep"])
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


Curve = list[tuple[float, float, float]]  # (origin bytes / reference, hit ratio, budget)


def _first(values: list[Any]) -> Any:
    return next((v for v in values if is_number(v)), None)


def frontier_data(bs: Mapping[str, Any]) -> tuple[str, float, dict[str, plots.Point], dict[str, Curve]] | None:
    """(best reactive, its origin bytes, budget-free points, budget curves) of a prefetch-budget sweep."""
    hits, origin, budgets = bs.get("hit_ratio") or {}, bs.get("origin_bytes") or {}, list(bs.get("budgets") or [])
    reactive = [(_first(hits[p]), p) for p in ONLINE_REACTIVE if p in hits and is_number(_first(hits[p]))]
    if not reactive or not budgets:
        return None
    best = max(reactive)[1]
    ref = _first(origin.get(best) or [])
    if not is_number(ref) or not ref:
        return None
    points: dict[str, plots.Point] = {}
    curves: dict[str, Curve] = {}
    for name in plots.order_policies(list(hits)):
        pts = [(o / ref, h, b) for h, o, b in zip(hits[name], origin.get(name) or [], budgets, strict=False)
               if is_number(h) and is_number(o)]
        if not pts:
            continue
        if name in ONLINE_REACTIVE or name == "belady":
            points[name] = (pts[0][0], pts[0][1])
        else:
            curves[name] = pts
    return best, float(ref), points, curves


def at_reference(curve: Curve, x: float = 1.0) -> tuple[float, float, float] | None:
    """Highest hit ratio where the curve (in budget order) crosses origin traffic x, linearly
    interpolated between the two budgets around the crossing: (hit, budget_lo, budget_hi)."""
    best: tuple[float, float, float] | None = None
    for (x0, y0, b0), (x1, y1, b1) in zip(curve, curve[1:], strict=False):
        if min(x0, x1) <= x <= max(x0, x1):
            y = y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            if best is None or y > best[0]:
                best = (y, b0, b1)
    return best


def frontier_sentence(name: str, curve: Curve, best: str, best_hit: float) -> str:
    """'At the origin traffic of the best reactive policy, <policy> hits X%' (interpolated, saying so)."""
    label = plots.BOUNDS.get(name, name)
    under = [p for p in curve if p[0] <= 1.0]
    measured = (f"; its best measured point at or below that traffic is budget {max(under, key=lambda p: p[1])[2]:g}: "
                f"{max(p[1] for p in under):.1%} at {max(under, key=lambda p: p[1])[0]:.2f}x") if under else ""
    hit_at = at_reference(curve)
    if hit_at is not None:
        y, b0, b1 = hit_at
        return (f"At the origin traffic of the best reactive policy ({best}, {best_hit:.1%}), {label} hits "
                f"{y:.1%} ({(y - best_hit) * 100:+.1f} points; interpolated linearly on its budget curve between budgets "
                f"{b0:g} and {b1:g}){measured}.")
    if not under:
        low = min(curve, key=lambda p: p[0])
        return (f"{label} never gets down to {best}'s origin traffic: its lowest is {low[0]:.2f}x at budget "
                f"{low[2]:g} ({low[1]:.1%}).")
    return f"{label} stays below {best}'s origin traffic at every budget{measured}."


def frontier_blocks(bs: Mapping[str, Any]) -> tuple[Block, ...]:
    """The frontier figure and the at-reference sentences of a prefetch-budget sweep."""
    data = frontier_data(bs)
    if data is None:
        return (Note("The prefetch-budget sweep has no reactive policy with origin bytes, so no frontier."),)
    best, _, points, curves = data
    best_hit = points[best][1]
    png = plots.frontier(points, {n: [(x, y) for x, y, _ in c] for n, c in curves.items()},
                         f"origin bytes (x {best}'s, prefetches included)",
                         "Hit ratio against origin traffic over prefetch budgets", ref_x=1.0,
                         labelled=(best, "belady"))
    budgets = ", ".join(f"{b:g}" for b in bs.get("budgets") or [])
    return (f"Each predictive policy and belady_prefetch (offline bound) is a curve over cache.prefetch_budget "
            f"({budgets}); reactive policies and belady do not prefetch and are points.",
            Figure("budget_frontier", png, "Hit ratio against origin bytes, one curve per predictive policy"),
            *(frontier_sentence(n, c, best, best_hit) for n, c in curves.items()))


def calibration_section(results: Mapping[str, Any]) -> Section:
    """Each predictor's expected calibration error on the test period, as predicted and calibrated."""
    title = "Calibration of predicted probabilities"
    policies = results.get("policies") or {}
    cal = {n: v["calibration"] for n, v in policies.items() if isinstance(v, Mapping)
           and isinstance(v.get("calibration"), Mapping)}
    if not cal:
        return Section("calibration", title, (not_in_run("Calibration"),))
    rows = tuple((n, _ece(c.get("ece_raw")), _ece(c.get("ece")),
                  f"{(c.get('calibrator') or {}).get('kind', '—')} ({(c.get('calibrator') or {}).get('edges', 0)} edges)")
                 for n, c in cal.items())
    return Section("calibration", title, (
        "A prediction is right when the same user's next request is the predicted item. The calibrator is "
        "fitted on each edge's held-out training slice only; both errors are measured on the test period. "
        "Value-per-byte prefetching (cache.prefetch_price) reads the calibrated probabilities.",
        Table(("predictor", "ECE as predicted", "ECE calibrated", "calibrator"), rows,
              "Expected calibration error: share-weighted |mean predicted - observed| over probability bins.")))


def _ece(v: Any) -> str:
    return f"{v:.4f}" if is_number(v) else "—"

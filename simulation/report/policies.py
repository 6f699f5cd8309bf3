"""Policy sections of a report: the policy table, the verdict, per-edge hit ratios.

Reads `results["policies"]` (DESIGN.md: `{policy: {"overall": {...}, "per_edge": {edge: {...}}}}`).
Optional metrics (origin bytes, latency) get a column only when some policy reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulation.config import PREDICTIVE_POLICIES
from simulation.report import plots
from simulation.report.model import (
    Block,
    Figure,
    Note,
    Section,
    Table,
    fmt_bytes,
    fmt_delta,
    fmt_int,
    fmt_ratio,
    is_number,
    not_in_run,
)

ONLINE_REACTIVE = ("lru", "lfu", "arc", "s3fifo", "wtinylfu")
BOUND = "belady"
PREFETCH_BOUND = "belady_prefetch"
BOUND_LABELS = {BOUND: "belady (bound)", PREFETCH_BOUND: "belady_prefetch (offline bound)"}
PREDICTIVE = "federated"
TIE = 0.0005  # differences below this (0.05 pp) are reported as ties


def _fmt_ms(value: Any) -> str:
    return f"{value:.1f}" if is_number(value) else "—"


# (key, header, formatter, optional column?)
METRICS: tuple[tuple[str, str, Callable[[Any], str], bool], ...] = (
    ("hit_ratio", "hit ratio", fmt_ratio, False),
    ("byte_hit_ratio", "byte hit ratio", fmt_ratio, False),
    ("requests", "requests", fmt_int, False),
    ("prefetch_bytes", "prefetch bytes", fmt_bytes, False),
    ("prefetch_precision", "prefetch precision", fmt_ratio, False),
    ("origin_bytes", "origin bytes", fmt_bytes, True),
    ("latency_mean_ms", "mean ms", _fmt_ms, True),
    ("latency_p99_ms", "p99 ms", _fmt_ms, True),
)
ALIASES = {"latency_mean_ms": ("latency_ms_mean", "mean_latency_ms"),
           "latency_p99_ms": ("latency_ms_p99", "p99_latency_ms")}


def metric(stats: Mapping[str, Any] | None, key: str) -> Any:
    """A metric from an overall/per-edge dict, accepting the documented aliases."""
    if not stats:
        return None
    for name in (key, *ALIASES.get(key, ())):
        if name in stats:
            return stats[name]
    return None


def hit(policies: Mapping[str, Any], name: str, edge: str | None = None) -> Any:
    """Overall (edge=None) or one edge's hit ratio of a policy, or None."""
    entry = policies.get(name) or {}
    stats = entry.get("overall") if edge is None else (entry.get("per_edge") or {}).get(edge)
    return metric(stats, "hit_ratio")


def best_reactive(policies: Mapping[str, Any], edge: str | None = None) -> str | None:
    """The online reactive policy with the highest hit ratio (overall or on one edge)."""
    scored = [(hit(policies, p, edge), p) for p in ONLINE_REACTIVE if is_number(hit(policies, p, edge))]
    return max(scored, key=lambda s: (s[0], -ONLINE_REACTIVE.index(s[1])))[1] if scored else None


def edges_of(policies: Mapping[str, Any]) -> list[str]:
    """Every edge id any policy reports, sorted."""
    return sorted({e for p in policies.values() for e in (p.get("per_edge") or {})})


def kind(name: str, entry: Mapping[str, Any] | None = None) -> str:
    """reactive, offline bound, or predictive (the replay's own `kind` when it gives one)."""
    if name in BOUND_LABELS or (entry and entry.get("kind") == "offline"):
        return "offline bound"
    if entry and isinstance(entry.get("kind"), str):
        return str(entry["kind"])
    return "predictive" if name in PREDICTIVE_POLICIES else "reactive"


def cell(stats: Mapping[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    """One metric cell; precision is '—' for a policy that prefetched nothing."""
    if key == "prefetch_precision" and stats.get("prefetched") == 0:
        return "—"
    return fmt(metric(stats, key))


def policy_table(policies: Mapping[str, Any]) -> Table:
    """Every policy's overall metrics, best hit ratio first; best reactive and belady marked."""
    cols = [m for m in METRICS
            if not m[3] or any(is_number(metric(p.get("overall"), m[0])) for p in policies.values())]
    order = plots.order_policies(list(policies))
    names = sorted(order, key=lambda n: (-(hit(policies, n) or 0.0), order.index(n)))
    best = best_reactive(policies)
    rows, marks = [], []
    for name in names:
        label = BOUND_LABELS.get(name, name) + (" ★ best reactive" if name == best else "")
        overall = policies[name].get("overall") or {}
        rows.append((label, kind(name, policies[name]), *(cell(overall, key, fmt) for key, _, fmt, _ in cols)))
        marks.append("best" if name == best else "bound" if name in BOUND_LABELS else
                     "focus" if name == PREDICTIVE else "")
    return Table(("policy", "kind", *(h for _, h, _, _ in cols)), tuple(rows),
                 "All policies over all edges, sorted by hit ratio. ★ = best online reactive "
                 "policy; belady is the offline optimum for demand caching, belady_prefetch the offline "
                 "prefetching bound with the same capacity and prefetch budget (future known; by default a request "
                 "is prefetchable only after its user's previous request, as the live cache predicts it)"
                 + ("; mean ms / p99 ms = simulated request latency." if any(c[0].startswith("latency") for c in cols)
                    else "."), tuple(marks))


def _points(a: float, b: float) -> str:
    """|a - b| in percentage points, from the one-decimal percentages the sentence shows."""
    return f"{abs(round(a * 100, 1) - round(b * 100, 1)):.1f}"


def _word(delta: float) -> str:
    return "ties" if abs(delta) < TIE else "wins" if delta > 0 else "loses"


def overall_verdict(policies: Mapping[str, Any]) -> str:
    """One plain sentence: federated vs the best reactive policy and vs belady, overall."""
    fed, best = hit(policies, PREDICTIVE), best_reactive(policies)
    if not is_number(fed):
        return "Predictive caching (federated) is not in this run, so there is no verdict."
    parts = [f"Overall, predictive caching (federated) hits {fed:.1%} of requests"]
    if best is not None:
        d = fed - hit(policies, best)
        parts.append(f"it {_word(d)} against the best reactive policy ({best}, "
                     f"{hit(policies, best):.1%}) by {_points(fed, hit(policies, best))} points"
                     + _origin_cost(policies, best))
    bound = hit(policies, BOUND)
    if is_number(bound):
        d = fed - bound
        rel = "is above" if d >= TIE else "matches" if abs(d) < TIE else "is below"
        parts.append(f"it {rel} the offline bound belady ({bound:.1%}) by {_points(fed, bound)} points"
                     + (" (prefetching can beat a demand-only bound)" if d >= TIE else ""))
    return parts[0] + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "") + "." + _attribution(policies, fed)


def _origin_cost(policies: Mapping[str, Any], best: str) -> str:
    """Origin traffic of federated against the best reactive policy (prefetches included)."""
    def origin(name: str) -> Any:
        return metric((policies.get(name) or {}).get("overall"), "origin_bytes")
    fed_b, best_b = origin(PREDICTIVE), origin(best)
    if not (is_number(fed_b) and is_number(best_b)) or best_b <= 0:
        return ""
    change = fed_b / best_b - 1
    if abs(change) < 5e-4:
        return f", while fetching the same bytes from the origin as {best} (within 0.05%, prefetches included)"
    return (f", while fetching {abs(change):.1%} {'more' if change > 0 else 'fewer'} bytes from the "
            f"origin than {best} (prefetches included)")


def _attribution(policies: Mapping[str, Any], fed: float) -> str:
    """How much of federated's result the edge cache gives with plain popularity predictions."""
    pop, markov = hit(policies, "popularity"), hit(policies, "markov_sql")
    if not is_number(pop):
        return ""
    text = (f" With the same predictive edge cache, plain popularity predictions reach {pop:.1%}, so "
            f"the federated model's predictions account for {round(fed * 100, 1) - round(pop * 100, 1):+.1f} points")
    if is_number(markov):
        text += f"; the Spark SQL Markov baseline (markov_sql) reaches {markov:.1%}"
    itemcf = hit(policies, "itemcf")
    if is_number(itemcf):
        text += f"; the federated co-occurrence counts (itemcf) reach {itemcf:.1%}"
    return text + "."


def edge_verdicts(policies: Mapping[str, Any]) -> tuple[str, Table | None]:
    """Per edge: federated vs that edge's best reactive policy and vs belady."""
    edges = [e for e in edges_of(policies) if is_number(hit(policies, PREDICTIVE, e))]
    if not edges:
        return "No per-edge federated results, so there is no per-edge verdict.", None
    rows: list[tuple[str, ...]] = []
    wins: list[str] = []
    losses: list[str] = []
    above = 0
    for e in edges:
        fed, best, bound = hit(policies, PREDICTIVE, e), best_reactive(policies, e), hit(policies, BOUND, e)
        d_best = fed - hit(policies, best, e) if best else None
        d_bound = fed - bound if is_number(bound) else None
        if d_best is not None and d_best >= TIE:
            wins.append(e)
        elif d_best is not None and d_best <= -TIE:
            losses.append(e)
        above += int(d_bound is not None and d_bound >= TIE)
        rows.append((e, fmt_ratio(fed), best or "—", fmt_ratio(hit(policies, best, e) if best else None),
                     fmt_delta(d_best), _word(d_best) if d_best is not None else "—",
                     fmt_ratio(bound), fmt_delta(d_bound)))
    text = (f"Per edge, federated beats that edge's best reactive policy on {len(wins)} of {len(edges)} "
            f"edges" + (f" and loses on {', '.join(losses)}" if losses else "") +
            (f"; it exceeds belady on {above} of {len(edges)}" if is_number(hit(policies, BOUND)) else "")
            + ".")
    table = Table(("edge", "federated", "best reactive", "its hit ratio", "Δ vs best reactive",
                   "verdict", "belady", "Δ vs belady"), tuple(rows),
                  "Federated hit ratio per edge against the best reactive policy of that edge and belady.")
    return text, table


def per_edge_table(policies: Mapping[str, Any]) -> Table:
    """Hit ratio of every policy (rows) on every edge (columns)."""
    edges = edges_of(policies)
    rows = tuple((name, fmt_ratio(hit(policies, name)), *(fmt_ratio(hit(policies, name, e)) for e in edges))
                 for name in plots.order_policies(list(policies)))
    return Table(("policy", "all edges", *edges), rows, "Hit ratio per edge.")


def per_edge_figure(policies: Mapping[str, Any]) -> Figure:
    """Grouped bars: hit ratio per edge, one bar per policy."""
    edges = edges_of(policies)
    series = {name: [hit(policies, name), *(hit(policies, name, e) for e in edges)]
              for name in plots.order_policies(list(policies))}
    png = plots.grouped_bars(["all edges", *edges], series, "hit ratio", "Hit ratio per edge by policy")
    return Figure("per_edge_hit_ratio", png, "Grouped bars of hit ratio per edge for every policy")


def policy_sections(results: Mapping[str, Any]) -> list[Section]:
    """The policies section and the per-edge section."""
    policies = results.get("policies")
    if not policies:
        note = not_in_run("Policy results", "The replay stage writes them (`edgecache replay`).")
        return [Section("policies", "Policies", (note,)), Section("per-edge", "Per-edge hit ratio", (note,))]
    text, table = edge_verdicts(policies)
    blocks: list[Block] = [overall_verdict(policies), policy_table(policies), text]
    if table is not None:
        blocks.append(table)
    skipped = results.get("policies_skipped")
    if isinstance(skipped, Mapping) and skipped:
        blocks.append(Table(("policy", "reason"), tuple((str(p), str(r)) for p, r in skipped.items()),
                            "Policies the replay skipped, and why."))
    edge_blocks: tuple[Block, ...] = ((per_edge_figure(policies), per_edge_table(policies))
                                      if edges_of(policies) else (Note("No per-edge results in this run."),))
    return [Section("policies", "Policies", tuple(blocks)),
            Section("per-edge", "Per-edge hit ratio", edge_blocks)]

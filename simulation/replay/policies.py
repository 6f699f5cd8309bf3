"""Replay each edge's test stream through every policy, same order, same capacity.

Reactive policies and Belady run in libCacheSim; predictive policies run through the real
Redis path (EdgeCache + DeliveryFlow), each starting from an empty cache. Results carry the
DESIGN.md metrics per edge and overall, the static cache efficiency and degraded spans.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_nodes.cache.accounting import EdgeStats, Latency
from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.flow import Breaker, DeliveryFlow, ItemLookup, RequestBatch
from edge_nodes.cache.settings import CacheSettings
from edge_nodes.predictor import Predictor
from monitoring import metrics
from simulation.replay.belady_prefetch import NAME as BELADY_PREFETCH
from simulation.replay.belady_prefetch import PrefetchLimits, belady_prefetch
from simulation.replay.reactive import OFFLINE, REACTIVE, RequestTrace, run_all
from simulation.replay.streams import EdgeStream
from simulation.replay.timeline import Timeline

log = logging.getLogger(__name__)

BatchHook = Callable[[str, str, RequestBatch], None]


@dataclass(frozen=True)
class ReplaySettings:
    """Plain values the replay needs (parsed once from [cache])."""

    cache: CacheSettings
    top_k: int = 3
    batch_size: int = 2000
    min_demand: float = 0.0
    bound_lead: str = "user"  # belady_prefetch: "user" (after the user's previous request) | "none"
    latency: Latency = field(default_factory=Latency)


@dataclass
class PolicyRun:
    """Per-edge stats of one policy, plus how it was configured and anything suspicious."""

    kind: str
    per_edge: dict[str, EdgeStats] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def reactive_stats(stream: EdgeStream, catalog: ItemLookup, hits: np.ndarray) -> EdgeStats:
    """EdgeStats from a library policy's per-request hit flags (the caller records the metrics)."""
    sizes = catalog.sizes[stream.item]
    return EdgeStats(requests=len(stream), hits=int(hits.sum()), requested_bytes=int(sizes.sum()),
                     hit_bytes=int(sizes[hits].sum()))


def replay_reactive(stream: EdgeStream, catalog: ItemLookup, settings: ReplaySettings,
                    policies: tuple[str, ...], runs: dict[str, PolicyRun],
                    timeline: Timeline | None = None) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Run the libCacheSim policies and the prefetching bound on one edge's stream; file their stats.

    Returns the reactive policies that ran: name -> (per-request hit flags, segment params), what
    the predictive flows' shadow caches would otherwise simulate again on the same stream."""
    wanted = tuple(p for p in policies if p in REACTIVE + OFFLINE)
    if not wanted:
        return {}
    trace = RequestTrace(stream.item, catalog.sizes[stream.item])
    cap, unit = settings.cache.capacity, settings.cache.unit
    ran: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for name, res in run_all(trace, cap, unit, wanted).items():
        if name in REACTIVE and not any(f.startswith("skipped") for f in res.flags):
            ran[name] = (res.hits, res.params)
        run = runs.setdefault(name, PolicyRun("offline" if name in OFFLINE else "reactive"))
        _file(run, stream, reactive_stats(stream, catalog, res.hits), name)
        if timeline is not None:
            timeline.add(name, stream.ts, res.hits)
        run.params[stream.edge_id] = {"library": "libcachesim", **res.params}
        run.flags += [f"{stream.edge_id}: {f}" for f in res.flags]
    if BELADY_PREFETCH in wanted:
        hits = _replay_bound(stream, catalog, trace, settings, runs.setdefault(BELADY_PREFETCH, PolicyRun("offline")))
        if timeline is not None:
            timeline.add(BELADY_PREFETCH, stream.ts, hits)
    return ran


def _replay_bound(stream: EdgeStream, catalog: ItemLookup, trace: RequestTrace, settings: ReplaySettings,
                  run: PolicyRun) -> np.ndarray:
    """belady_prefetch with the live cache's capacity and prefetch limits."""
    c = settings.cache
    limits = PrefetchLimits(c.prefetch_budget, c.prefetch_max_share, settings.top_k)
    res = belady_prefetch(trace, c.capacity, c.unit, limits, stream.user if settings.bound_lead == "user" else None)
    stats = reactive_stats(stream, catalog, res.hits)
    stats.prefetched, stats.prefetch_bytes = res.prefetched, res.prefetch_bytes
    stats.prefetch_used, stats.prefetch_wasted = res.prefetch_used, res.prefetch_wasted
    _file(run, stream, stats, BELADY_PREFETCH)
    metrics.record_prefetch(stream.edge_id, BELADY_PREFETCH, res.prefetched, res.prefetch_bytes)
    lead = ("a request is prefetchable once its user's previous request is served" if settings.bound_lead == "user"
            else "zero fetch latency, any future request prefetchable")
    run.params[stream.edge_id] = {"algorithm": f"Cao et al. 1995 aggressive; {lead}", "lead": settings.bound_lead,
                                  "prefetch_budget": c.prefetch_budget,
                                  "prefetch_max_share": c.prefetch_max_share, "per_request": settings.top_k}
    if c.unit == "bytes":
        run.flags.append(f"{stream.edge_id}: bytes capacity: Belady with variable sizes is a heuristic, "
                         "not a strict bound")
    return res.hits


def _file(run: PolicyRun, stream: EdgeStream, stats: EdgeStats, name: str) -> None:
    run.per_edge[stream.edge_id] = stats
    metrics.record_requests(stream.edge_id, name, stats.hits, stats.requests - stats.hits)
    metrics.record_origin_bytes(stream.edge_id, name, stats.requested_bytes - stats.hit_bytes)


def replay_predictive(stream: EdgeStream, catalog: ItemLookup, cache: EdgeCache, predictor: Predictor | None,
                      policy: str, settings: ReplaySettings, breaker: Breaker | None = None,
                      on_batch: BatchHook | None = None, timeline: Timeline | None = None) -> EdgeStats:
    """Serve the stream through Redis from an empty cache; predictor None = plain LRU."""
    try:
        cache.flush()
    except Exception as e:  # noqa: BLE001 - an unreachable server is handled by the flow
        log.warning("edge %s: could not flush before %s (%s)", stream.edge_id, policy, e)
    flow = DeliveryFlow(stream.edge_id, policy, cache, catalog, predictor, settings.top_k, breaker,
                        settings.min_demand)
    hook = None if on_batch is None else lambda batch: on_batch(stream.edge_id, policy, batch)
    flow.serve_stream(stream.batches(settings.batch_size), hook)
    if timeline is not None and flow.hits:
        timeline.add(policy, stream.ts, np.concatenate(flow.hits))
    return flow.stats


def static_efficiency(stream: EdgeStream, catalog: ItemLookup, ranked: np.ndarray,
                      settings: ReplaySettings) -> dict[str, Any]:
    """Share of test requests (and bytes) hitting a static cache of the top-ranked items."""
    sizes = catalog.sizes[:-1]
    if settings.cache.unit == "items":
        chosen = ranked[:settings.cache.capacity]
    else:
        chosen = ranked[np.cumsum(sizes[ranked]) <= settings.cache.capacity]
    hit = np.isin(stream.item, chosen)
    req_sizes = catalog.sizes[stream.item]
    return {"hit_ratio": _ratio(int(hit.sum()), len(stream)),
            "byte_hit_ratio": _ratio(int(req_sizes[hit].sum()), int(req_sizes.sum())),
            "requests": len(stream), "cached_items": int(chosen.size)}


def oracle_ranking(stream: EdgeStream, n_items: int) -> np.ndarray:
    """Items by test-period frequency: the best possible static cache (offline)."""
    return np.argsort(-np.bincount(stream.item, minlength=n_items), kind="stable")


def summarize(runs: dict[str, PolicyRun], latency: Latency) -> dict[str, Any]:
    """results.json `policies`: overall and per-edge rows, params and flags per policy."""
    out: dict[str, Any] = {}
    for name, run in runs.items():
        total = EdgeStats()
        for st in run.per_edge.values():
            total.add(st)
        out[name] = {"kind": run.kind, "overall": total.summary(latency),
                     "per_edge": {e: st.summary(latency) for e, st in sorted(run.per_edge.items())},
                     "flags": run.flags}
        if run.params:
            out[name]["params"] = run.params
    return out


def degraded(runs: dict[str, PolicyRun]) -> list[dict[str, Any]]:
    """Every span of requests served without Redis, by policy and edge."""
    return [{"policy": name, "edge": edge, **span.as_dict()}
            for name, run in runs.items() for edge, st in sorted(run.per_edge.items())
            for span in st.spans]


def _ratio(a: int, b: int) -> float:
    return round(a / b, 6) if b else 0.0

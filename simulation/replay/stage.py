"""The `replay` pipeline stage: wires the run directory, Redis and predictors into the replay."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from edge_nodes.cache.accounting import Latency
from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.flow import ItemLookup, record_activity
from edge_nodes.cache.redis_conn import edge_namespace
from edge_nodes.cache.redis_server import redis_server
from edge_nodes.cache.settings import CacheSettings
from edge_nodes.devices import DEVICES
from edge_nodes.errors import EdgeError
from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_table import ITEMCF_FILE, CoocTable
from edge_nodes.learning.history import UserHistory
from edge_nodes.learning.predictors import PopularityPredictor
from edge_nodes.predictor import Predictor
from monitoring import metrics
from simulation.config import ExperimentConfig
from simulation.errors import RunDirError
from simulation.mirrors import mirror
from simulation.pipeline import StageContext
from simulation.replay.calibration import (
    EdgeCalibration,
    Isotonic,
    fit_calibrator,
    fit_side_scale,
    forget_held_out,
    measured,
    summarize_calibration,
)
from simulation.replay.lockstep import serve_lockstep
from simulation.replay.policies import (
    PolicyRun,
    ReplaySettings,
    degraded,
    oracle_ranking,
    replay_reactive,
    static_efficiency,
    summarize,
)
from simulation.replay.prediction_quality import summarize_quality
from simulation.replay.predictors import build_predictor
from simulation.replay.reactive import OFFLINE, REACTIVE
from simulation.replay.streams import EdgeStream, load_catalog, load_stream, test_edges, with_history
from simulation.replay.timeline import Timeline
from simulation.rundir import RunDir
from simulation.span import time_cut

log = logging.getLogger(__name__)


def settings_from(cfg: ExperimentConfig) -> ReplaySettings:
    """Plain replay settings from the typed config."""
    c = cfg.cache
    cache = mirror(CacheSettings, c, unit=c.capacity_unit)
    return ReplaySettings(cache, top_k=c.prefetch_top_k, batch_size=c.replay_batch, min_demand=c.prefetch_min_demand,
                          bound_lead=c.bound_lead, latency=Latency(c.edge_latency_ms, c.origin_latency_ms))


def predictive_policies(cfg: ExperimentConfig, run: RunDir) -> list[str]:
    """Configured predictive policies, plus personalized federated when its models exist."""
    names = [p for p in cfg.cache.policies if p not in REACTIVE + OFFLINE]
    if "federated" in names and (run.models / "personalized").is_dir():
        names.append("federated_personalized")
    return names


@dataclass
class Found:
    """What the replay found so far, folded edge by edge into results.json sections."""

    runs: dict[str, PolicyRun] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    static: dict[str, dict[str, Any]] = field(default_factory=lambda: {"popularity": {}, "oracle": {}})
    quality: dict[str, dict[str, tuple[int, float, int]]] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    calibration: dict[str, dict[str, EdgeCalibration]] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)  # the counts' refresh in the test period
    side_scale: dict[str, dict[str, float]] = field(default_factory=dict)  # policy -> edge -> factor

    def sections(self, cfg: ExperimentConfig, settings: ReplaySettings) -> dict[str, Any]:
        policies = summarize(self.runs, settings.latency)
        for name, per_edge in self.calibration.items():
            if name in policies:
                policies[name]["calibration"] = summarize_calibration(per_edge)
        for name, per_edge_scale in self.side_scale.items():
            if name in policies:
                policies[name]["side_scale"] = dict(sorted(per_edge_scale.items()))
        return {"policies": policies, "static_efficiency": _static_summary(self.static),
                "degraded": degraded(self.runs), "policies_skipped": self.skipped,
                "prediction_quality": summarize_quality(self.quality, cfg.model.top_k),
                "timeline": self.timeline.summary(), "analytics_refresh": self.refresh}


def replay_stage(ctx: StageContext) -> dict[str, Any]:
    """Replay every edge's test stream through every configured policy; results.json sections."""
    cfg, run = ctx.cfg, ctx.run
    edges = test_edges(run.require(run.test_stream, "features"))
    if not edges:
        raise RunDirError(f"{run.test_stream} has no edge_id=<id> partitions; run `edgecache features`")
    catalog = load_catalog(run.require(run.catalog, "generate"))
    settings = settings_from(cfg)
    found = Found()
    # One BLAS thread: the replay's matrix products are small, and a second BLAS thread fights
    # the Redis server for the cores (the default replay took 59 s instead of 42 s on 2 cores).
    with threadpool_limits(limits=1, user_api="blas"), \
            redis_server(cfg.redis.url, databases=len(edges) + 1) as url:
        streams = [load_stream(run.test_stream / f"edge_id={edge}", run.features / "user_state" / f"edge_id={edge}",
                               edge, cfg.features.history_len) for edge in edges]
        live = live_counts(cfg, run, streams, catalog.sizes.size - 1, found)
        for i, (edge, stream) in enumerate(zip(edges, streams, strict=True)):
            stream, history = with_history(stream, run.features / "history" / f"edge_id={edge}",
                                           catalog.sizes.size - 1)
            ctx.console.print(f"replay {edge}: {len(stream)} requests")
            metrics.init_edge(edge, cfg.cache.policies, DEVICES)
            record_activity(edge, stream.device_idx)
            ran = replay_reactive(stream, catalog, settings, cfg.cache.policies, found.runs, found.timeline)
            cache = EdgeCache(edge_namespace(url, edge, i, cfg.redis.isolation), settings.cache)
            try:
                _replay_predictive_edge(cfg, run, stream, history, live, catalog, cache, settings, found, ran)
                _static(run, stream, catalog, settings, found.static)
            finally:
                cache.flush()
                cache.client.close()
            metrics.set_stage_progress("replay", (i + 1) / len(edges))
    forget_held_out()
    return found.sections(cfg, settings)


def live_counts(cfg: ExperimentConfig, run: RunDir, streams: list[EdgeStream], items: int,
                found: Found) -> LiveCounts | None:
    """The summed co-occurrence counts re-summed every federated.analytics_refresh_days of the test
    period from what each edge's requests added (cooc_live.py); None when off or no table."""
    every = cfg.federated.analytics_refresh_days
    path = run.models / ITEMCF_FILE
    if every <= 0 or not path.is_file():
        found.refresh = {"every_days": every, "status": "off" if every <= 0 else f"no {ITEMCF_FILE}"}
        return None
    try:
        table = CoocTable.load(path, items)
    except EdgeError as e:  # the policies that read it report it when they load it themselves
        found.refresh = {"every_days": every, "status": f"unreadable: {e}"}
        return None
    cut = np.datetime64(time_cut(cfg, run))
    live = LiveCounts.from_events(table, [(s.hist, s.item, s.ts) for s in streams], cut, every,
                                  cfg.features.cooc_symmetric)
    last = max((int(live.refresh_of(s.ts).max()) for s in streams if len(s)), default=0)
    found.refresh = {"every_days": every, "status": "ok", "entries": int(live.src.size), "refreshes": last}
    log.info("itemcf counts re-summed every %g days of the test period: %d refreshes, %d (item, refresh, "
             "next item) entries", every, last, live.src.size)
    return live


def _replay_predictive_edge(cfg: ExperimentConfig, run: RunDir, stream: EdgeStream, history: UserHistory | None,
                            live: LiveCounts | None, catalog: ItemLookup, cache: EdgeCache, settings: ReplaySettings,
                            found: Found, reactive: dict[str, tuple[np.ndarray, dict[str, Any]]] | None = None) -> None:
    """Every predictive policy on one edge: its predictor built, its side scale and calibrator
    fitted on the held-out training slice (never the test period), then all served in lockstep
    (lockstep.py), each on its own cache; calibration and quality measured on the test period."""
    items = catalog.sizes.size - 1
    predictors: dict[str, Predictor] = {}
    calibrators: dict[str, Isotonic | None] = {}
    examples = run.features / "examples"
    for policy in predictive_policies(cfg, run):
        try:
            predictor = build_predictor(policy, run, stream.edge_id, items, history, live)
        except EdgeError as e:
            found.skipped[policy] = str(e)
            log.warning("policy %s skipped on %s: %s", policy, stream.edge_id, e)
            continue
        if cfg.cache.fit_side_scale:
            predictor, scale = fit_side_scale(predictor, examples, stream.edge_id, cfg.features.history_len,
                                              cfg.model.eval_fraction, cfg.model.top_k, cfg.features.cooc_symmetric)
            if scale is not None:
                found.side_scale.setdefault(policy, {})[stream.edge_id] = scale
        predictors[policy] = predictor
        calibrators[policy] = fit_calibrator(predictor, stream.edge_id, examples, cfg.features.history_len,
                                             cfg.model.eval_fraction, settings.top_k,
                                             cfg.features.cooc_symmetric) if cfg.cache.calibrate else None
    if not predictors:
        return
    served = serve_lockstep(stream, catalog, cache.ns, settings, predictors, calibrators, cfg.model.top_k,
                            found.timeline, reactive)
    for policy, out in served.items():
        found.calibration.setdefault(policy, {})[stream.edge_id] = measured(calibrators[policy], *out.test_pairs)
        prun = found.runs.setdefault(policy, PolicyRun("predictive"))
        prun.per_edge[stream.edge_id] = out.stats
        if out.limit is not None:
            prun.params[stream.edge_id] = out.limit
        found.quality.setdefault(policy, {})[stream.edge_id] = out.quality


def _static(run: RunDir, stream: EdgeStream, catalog: ItemLookup, settings: ReplaySettings,
            out: dict[str, dict[str, Any]]) -> None:
    items = catalog.sizes.size - 1
    part = run.features / "popularity" / f"edge_id={stream.edge_id}"
    if part.exists():
        ranked = PopularityPredictor.from_table(part, items).ranked
        out["popularity"][stream.edge_id] = static_efficiency(stream, catalog, ranked, settings)
    out["oracle"][stream.edge_id] = static_efficiency(stream, catalog, oracle_ranking(stream, items), settings)


def _static_summary(static: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per ranking: per-edge rows and an overall request-weighted row."""
    out: dict[str, Any] = {"note": "top-C items cached at the start of the test window, never updated; "
                                   "'oracle' ranks by test-period frequency (offline bound)"}
    for name, per_edge in static.items():
        if not per_edge:
            continue
        n = sum(r["requests"] for r in per_edge.values())
        hr = sum(r["hit_ratio"] * r["requests"] for r in per_edge.values()) / n if n else 0.0
        out[name] = {"overall": {"hit_ratio": round(hr, 6), "requests": n}, "per_edge": per_edge}
    return out

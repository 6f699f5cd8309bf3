"""Throughput of the predictive Redis replay against baselines measured in the same run.

    python benchmarks/bench_replay.py [--requests 200000] [--batch 2000] [--repeats 3] [--json PATH]

Prints requests/s of: the predictive replay (Markov predictions + prefetch through the
demand-aware Redis function), the same with LRU eviction, prefetching off (plain LRU), raw
pipelined GETs on the same server, and libCacheSim LRU on the same trace; then the ratios of
the predictive replay to raw GETs and to libCacheSim LRU, each taken within one round (the
machine may be shared: best and range over the rounds). Also: three models sharing side
information served in lockstep against the same served one after the other (with their
prediction-quality and calibration samples, as the replay stage does).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import figure  # noqa: E402
from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.flow import DeliveryFlow, ItemLookup  # noqa: E402
from edge_nodes.cache.redis_conn import edge_namespace  # noqa: E402
from edge_nodes.cache.redis_server import EmbeddedRedis  # noqa: E402
from edge_nodes.cache.settings import CacheSettings  # noqa: E402
from edge_nodes.learning.cooc_live import LiveCounts  # noqa: E402
from edge_nodes.learning.cooc_table import CoocTable, window_pairs  # noqa: E402
from edge_nodes.learning.model import ModelSpec, init_params, named, top_k, top_k_with_probs  # noqa: E402
from edge_nodes.learning.predictors import MarkovPredictor, ModelPredictor, PopularityPredictor  # noqa: E402
from edge_nodes.learning.side import SideInfo  # noqa: E402
from edge_nodes.predictor import Predictor  # noqa: E402
from simulation.replay import calibration  # noqa: E402
from simulation.replay.lockstep import serve_lockstep  # noqa: E402
from simulation.replay.policies import ReplaySettings, replay_predictive  # noqa: E402
from simulation.replay.prediction_quality import ranking_quality  # noqa: E402
from simulation.replay.reactive import RequestTrace, run_policy  # noqa: E402
from simulation.replay.streams import EdgeStream, build_hist  # noqa: E402

log = logging.getLogger("bench_replay")

PRED, GETS, LCS = "predictive replay (Redis demand, prefetch)", "raw pipelined GETs", "libCacheSim LRU"


def make_stream(n: int, items: int, users: int, seed: int) -> tuple[EdgeStream, ItemLookup, Predictor]:
    """A Zipf trace where users often continue to the next item (a learnable pattern)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, items + 1) ** 0.9
    item = rng.choice(items, size=n, p=p / p.sum()).astype(np.int64)
    user = rng.integers(0, users, size=n)
    cont = rng.random(n) < 0.5
    last = np.full(users, -1)
    for i in np.flatnonzero(cont):  # cheap sequential pass only for continuations
        if last[user[i]] >= 0:
            item[i] = (last[user[i]] + 1) % items
        last[user[i]] = item[i]
    hist = build_hist(user, item, np.full((users, 3), -1, dtype=np.int64))
    ts = np.datetime64("2025-04-20") + np.arange(n).astype("timedelta64[s]")
    stream = EdgeStream("edge-00", item, np.array([f"U{u:06d}" for u in user]),
                        rng.integers(0, 5, size=n), np.zeros(n, dtype=np.int64), ts, hist)
    catalog = ItemLookup.of(np.array([f"C{i:05d}" for i in range(items)]),
                         rng.integers(200, 4000, size=items) * 1_000_000)
    table = np.stack([(np.arange(items) + 1) % items, (np.arange(items) + 2) % items], axis=1)
    pred = MarkovPredictor(table, PopularityPredictor(np.bincount(item[: n // 10], minlength=items)))
    return stream, catalog, pred


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def redis_replay(url: str, stream: EdgeStream, catalog: ItemLookup, pred: Predictor | None,
                 capacity: int, batch: int, eviction: str = "lru") -> tuple[float, float]:
    """(seconds, hit ratio) of the Redis flow over the whole stream."""
    cache = EdgeCache(edge_namespace(url, "edge-00", 0), CacheSettings(capacity=capacity, eviction=eviction))
    cache.flush()
    cache.load()
    flow = DeliveryFlow("edge-00", "bench", cache, catalog, pred, 3)
    secs = timed(lambda: flow.serve_stream(stream.batches(batch)))
    cache.flush()
    cache.client.close()
    return secs, flow.stats.hits / flow.stats.requests


def raw_gets(url: str, stream: EdgeStream, catalog: ItemLookup, batch: int) -> float:
    """Seconds for pipelined GETs of every requested content id (no cache logic at all)."""
    ns = edge_namespace(url, "edge-00", 0)
    ids = catalog.ids[stream.item].tolist()

    def run() -> None:
        for s in range(0, len(ids), batch):
            pipe = ns.client.pipeline(transaction=False)
            for c in ids[s:s + batch]:
                pipe.get(c)
            pipe.execute()
    secs = timed(run)
    ns.client.close()
    return secs


def measure(args: argparse.Namespace, stream: EdgeStream, catalog: ItemLookup, pred: Predictor,
            models: dict[str, Predictor]) -> tuple[dict[str, float], dict[str, float]]:
    """One round of every contender on the same trace and server: (seconds, hit ratios)."""
    trace = RequestTrace(stream.item, catalog.sizes[stream.item])
    secs: dict[str, float] = {LCS: timed(lambda: run_policy("lru", trace, args.capacity, "items"))}
    hr: dict[str, float] = {}
    with EmbeddedRedis() as server:
        for name, p, ev in ((PRED, pred, "demand"), ("predictive, LRU eviction", pred, "lru"),
                            ("Redis LRU, prefetch off", None, "lru")):
            secs[name], hr[name] = redis_replay(server.url, stream, catalog, p, args.capacity, args.batch, ev)
        secs[GETS] = raw_gets(server.url, stream, catalog, args.batch)
        secs |= lockstep_vs_alone(server.url, head(stream, args.lockstep_requests), catalog, models, args.batch,
                                  args.capacity)
    return secs, hr


LOCKSTEP, ALONE = "3 side-info models served in lockstep", "the same served one after the other"


def side_models(stream: EdgeStream, items: int) -> dict[str, Predictor]:
    """Three models (federated, centralized, personalized in a replay) reading one SideInfo: the
    co-occurrence counts of the stream's first tenth (window 5, decay 0.6), re-summed every 15
    minutes of the rest (federated.analytics_refresh_days, as the replay stage serves them)."""
    head = len(stream) // 10
    table = CoocTable.from_coo([window_pairs(stream.hist[:head, :-1], stream.item[:head], 5, 0.6, False)],
                               items, 5, 0.6)
    rest = slice(head, None)
    live = LiveCounts.from_events(table, [(stream.hist[rest], stream.item[rest], stream.ts[rest])],
                                  stream.ts[head], 15 / 1440, False)
    side = SideInfo(None, live)
    out: dict[str, Predictor] = {}
    for seed, name in enumerate(("federated", "centralized", "federated_personalized")):
        spec = ModelSpec(n_items=items, dim=32, history_len=stream.hist.shape[1])
        params = init_params(spec, np.random.default_rng(seed))
        named(params, spec)["side_w"][...] = [-1.0, 0.5, 0.3]
        out[name] = ModelPredictor(params, spec, top_k, name, top_k_with_probs, side)
    return out


def lockstep_vs_alone(url: str, stream: EdgeStream, catalog: ItemLookup, models: dict[str, Predictor],
                      batch: int, capacity: int) -> dict[str, float]:
    """Seconds of serving the models in lockstep (simulation/replay/lockstep.py: serving, quality and
    calibration's test sample from one side computation per batch) and of serving each alone with
    its own quality and test-sample passes, as the replay did before."""
    settings = ReplaySettings(CacheSettings(capacity=capacity, eviction="demand"), top_k=3, batch_size=batch)
    ns = edge_namespace(url, "edge-00", 0)
    cache = EdgeCache(ns, settings.cache)
    cache.load()

    def alone() -> None:
        for name, p in models.items():
            replay_predictive(stream, catalog, cache, p, name, settings)
            ranking_quality(stream, p, 10)
            calibration.test_pairs(stream, p, 3)

    secs = {ALONE: timed(alone),
            LOCKSTEP: timed(lambda: serve_lockstep(stream, catalog, ns, settings, models, {}, 10))}
    cache.flush()
    ns.client.close()
    return secs


def head(stream: EdgeStream, n: int) -> EdgeStream:
    """The stream's first n requests."""
    return EdgeStream(stream.edge_id, *(a[:n] for a in (stream.item, stream.user, stream.device_idx, stream.hour,
                                                       stream.ts, stream.hist)))


def figures(rounds: list[tuple[dict[str, float], dict[str, float]]], n: int, n_lockstep: int) -> dict[str, Any]:
    """bench.json's dict: every Redis path vs raw GETs and vs libCacheSim, ratios within one round."""
    secs = [r[0] for r in rounds]
    rate = {name: max((n_lockstep if name in (LOCKSTEP, ALONE) else n) / s[name] for s in secs) for name in secs[0]}
    out = []
    for name in secs[0]:
        if name in (GETS, LCS, LOCKSTEP, ALONE):
            continue
        for base in (GETS, LCS):
            best = max(secs, key=lambda s, b=base, x=name: s[b] / s[x])
            out.append(figure(name, n / best[name], "req/s", base, n / best[base],
                              f"best of {len(secs)} rounds; range {_range(secs, name, base)}"))
    best = max(secs, key=lambda s: s[LCS] / s[GETS])
    out.append(figure(GETS, n / best[GETS], "req/s", LCS, n / best[LCS]))
    best = max(secs, key=lambda s: s[ALONE] / s[LOCKSTEP])
    out.append(figure(LOCKSTEP, n_lockstep / best[LOCKSTEP], "req/s", ALONE, n_lockstep / best[ALONE],
                      f"best of {len(secs)} rounds; range {_range(secs, LOCKSTEP, ALONE)}"))
    return {"figures": out, "req_per_s": rate, "requests": n, "rounds": len(secs),
            "hit_ratio": rounds[0][1]}


def _range(secs: list[dict[str, float]], name: str, base: str) -> str:
    ratios = sorted(s[base] / s[name] for s in secs)
    return f"{ratios[0]:.3g}-{ratios[-1]:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--capacity", type=int, default=100)
    ap.add_argument("--lockstep-requests", type=int, default=40_000,
                    help="requests of the lockstep comparison (the stream's first n)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each ratio is taken within one round")
    ap.add_argument("--json", type=Path, help="also write the figures (value, baseline, ratio) here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stream, catalog, pred = make_stream(args.requests, 3000, 4000, seed=1)
    n, n_lockstep = len(stream), min(args.lockstep_requests, len(stream))
    models = side_models(head(stream, n_lockstep), 3000)
    rounds = [measure(args, stream, catalog, pred, models) for _ in range(args.repeats)]
    for name in rounds[0][0]:
        rates = sorted((n_lockstep if name in (LOCKSTEP, ALONE) else n) / r[0][name] for r in rounds)
        log.info("%-44s %10.0f req/s (range %.0f-%.0f over %d rounds)", name, rates[-1], rates[0], rates[-1],
                 len(rates))
    log.info("hit ratio (capacity %d items): %s", args.capacity,
             ", ".join(f"{k} {v:.4f}" for k, v in rounds[0][1].items()))
    for label, base in (("predictive / raw pipelined GETs", GETS), ("predictive / libCacheSim LRU", LCS)):
        ratios = sorted(r[0][base] / r[0][PRED] for r in rounds)
        log.info("ratio %-36s best %.2f (range %.2f-%.2f)", label, ratios[-1], ratios[0], ratios[-1])
    ratios = sorted(r[0][ALONE] / r[0][LOCKSTEP] for r in rounds)
    log.info("ratio %-36s best %.2f (range %.2f-%.2f)", "lockstep / one after the other", ratios[-1], ratios[0],
             ratios[-1])
    ratios = sorted(r[0][LCS] / r[0]["Redis LRU, prefetch off"] for r in rounds)
    log.info("ratio %-36s best %.2f (range %.2f-%.2f)", "redis lru / libCacheSim LRU", ratios[-1], ratios[0], ratios[-1])
    if args.json:
        args.json.write_text(json.dumps({"capacity": args.capacity, **figures(rounds, n, n_lockstep)}, indent=2) + "\n")


if __name__ == "__main__":
    main()

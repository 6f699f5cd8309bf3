"""Throughput of the predictive Redis replay against baselines measured in the same run.

    python benchmarks/bench_replay.py [--requests 200000] [--batch 2000] [--repeats 3] [--json PATH]

Prints requests/s of: the predictive replay (Markov predictions + prefetch through the
demand-aware Redis function), the same with LRU eviction, prefetching off (plain LRU), raw
pipelined GETs on the same server, and libCacheSim LRU on the same trace; then the ratios of
the predictive replay to raw GETs and to libCacheSim LRU, each taken within one round (the
machine may be shared: best and range over the rounds).
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
from edge_nodes.learning.predictors import MarkovPredictor, PopularityPredictor  # noqa: E402
from edge_nodes.predictor import Predictor  # noqa: E402
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


def measure(args: argparse.Namespace, stream: EdgeStream, catalog: ItemLookup,
            pred: Predictor) -> tuple[dict[str, float], dict[str, float]]:
    """One round of every contender on the same trace and server: (seconds, hit ratios)."""
    trace = RequestTrace(stream.item, catalog.sizes[stream.item])
    secs: dict[str, float] = {LCS: timed(lambda: run_policy("lru", trace, args.capacity, "items"))}
    hr: dict[str, float] = {}
    with EmbeddedRedis() as server:
        for name, p, ev in ((PRED, pred, "demand"), ("predictive, LRU eviction", pred, "lru"),
                            ("Redis LRU, prefetch off", None, "lru")):
            secs[name], hr[name] = redis_replay(server.url, stream, catalog, p, args.capacity, args.batch, ev)
        secs[GETS] = raw_gets(server.url, stream, catalog, args.batch)
    return secs, hr


def figures(rounds: list[tuple[dict[str, float], dict[str, float]]], n: int) -> dict[str, Any]:
    """bench.json's dict: every Redis path vs raw GETs and vs libCacheSim, ratios within one round."""
    secs = [r[0] for r in rounds]
    rate = {name: max(n / s[name] for s in secs) for name in secs[0]}
    out = []
    for name in secs[0]:
        if name in (GETS, LCS):
            continue
        for base in (GETS, LCS):
            best = max(secs, key=lambda s, b=base, x=name: s[b] / s[x])
            out.append(figure(name, n / best[name], "req/s", base, n / best[base],
                              f"best of {len(secs)} rounds; range {_range(secs, name, base)}"))
    best = max(secs, key=lambda s: s[LCS] / s[GETS])
    out.append(figure(GETS, n / best[GETS], "req/s", LCS, n / best[LCS]))
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
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each ratio is taken within one round")
    ap.add_argument("--json", type=Path, help="also write the figures (value, baseline, ratio) here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stream, catalog, pred = make_stream(args.requests, 3000, 4000, seed=1)
    n = len(stream)
    rounds = [measure(args, stream, catalog, pred) for _ in range(args.repeats)]
    for name in rounds[0][0]:
        rates = sorted(n / r[0][name] for r in rounds)
        log.info("%-44s %10.0f req/s (range %.0f-%.0f over %d rounds)", name, rates[-1], rates[0], rates[-1],
                 len(rates))
    log.info("hit ratio (capacity %d items): %s", args.capacity,
             ", ".join(f"{k} {v:.4f}" for k, v in rounds[0][1].items()))
    for label, base in (("predictive / raw pipelined GETs", GETS), ("predictive / libCacheSim LRU", LCS)):
        ratios = sorted(r[0][base] / r[0][PRED] for r in rounds)
        log.info("ratio %-36s best %.2f (range %.2f-%.2f)", label, ratios[-1], ratios[0], ratios[-1])
    ratios = sorted(r[0][LCS] / r[0]["Redis LRU, prefetch off"] for r in rounds)
    log.info("ratio %-36s best %.2f (range %.2f-%.2f)", "redis lru / libCacheSim LRU", ratios[-1], ratios[0], ratios[-1])
    if args.json:
        args.json.write_text(json.dumps({"capacity": args.capacity, **figures(rounds, n)}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Stand-in pipeline that records metrics the way the real stages will, through the real CLI.

    python -m tests.monitoring_driver run --config experiments/smoke.toml --metrics-port N

Same arguments as `edgecache run` (it *is* `edgecache run`: config loading, the exporter
wiring, run_pipeline), with each not-yet-landed stage replaced by a short stand-in that calls
the monitoring.metrics helpers the replay and the federated server call. Swap the module for
`simulation.cli` and the real stages produce the traffic instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from monitoring import metrics
from simulation import pipeline
from simulation.config import PREDICTIVE_POLICIES
from simulation.pipeline import StageContext

DEVICES = ("TV", "mobile", "tablet", "web", "console")  # docs/internals.md order
TICK_S = 0.25
REPLAY_TICKS = 16  # ~4 s of replay: several 1 s scrapes see the counters move


def _edges(ctx: StageContext) -> list[str]:
    return [f"edge-{i:02d}" for i in range(ctx.cfg.workload.edges)]


def _rng(ctx: StageContext, stage: str) -> np.random.Generator:
    return np.random.default_rng([ctx.cfg.run.seed, len(stage)])


def generate(ctx: StageContext) -> dict[str, Any]:
    """Viewing events by edge and device, in a few chunks."""
    rng, chunks = _rng(ctx, "generate"), 4
    for chunk in range(chunks):
        for edge in _edges(ctx):
            counts = rng.multinomial(ctx.cfg.workload.events // (chunks * ctx.cfg.workload.edges),
                                     [0.4, 0.3, 0.1, 0.15, 0.05])
            for device, n in zip(DEVICES, counts, strict=True):
                metrics.record_user_events(edge, device, int(n))
        metrics.set_stage_progress("generate", (chunk + 1) / chunks)
        time.sleep(TICK_S)
    return {}


def features(ctx: StageContext) -> dict[str, Any]:
    """Nothing to record but progress."""
    metrics.set_stage_progress("features", 1.0)
    return {}


def train(ctx: StageContext) -> dict[str, Any]:
    """Federated rounds with falling loss and rising hit@K, plus the baselines' final numbers."""
    rounds = ctx.cfg.federated.rounds
    for rnd in range(1, rounds + 1):
        metrics.record_round(rnd, loss=2.0 / rnd, hit=0.3 * (1 - 0.5 ** rnd))
        metrics.set_stage_progress("train", rnd / rounds)
        time.sleep(2 * TICK_S)
    metrics.record_round(rounds, loss=1.5, hit=0.2, model="local_only")
    metrics.record_round(rounds, loss=0.5, hit=0.35, model="centralized")
    return {}


def replay(ctx: StageContext) -> dict[str, Any]:
    """Request batches per edge and policy; predictive policies prefetch and time predictions."""
    rng, edges, policies = _rng(ctx, "replay"), _edges(ctx), ctx.cfg.cache.policies
    for edge in edges:
        metrics.init_edge(edge, policies)
    for tick in range(REPLAY_TICKS):
        for edge in edges:
            for policy in policies:
                hits = int(rng.binomial(50, 0.2 + 0.4 * rng.random()))
                metrics.record_requests(edge, policy, hits, 50 - hits)
                metrics.record_origin_bytes(edge, policy, (50 - hits) * 4.0e6)
                if policy in PREDICTIVE_POLICIES:
                    _predict_and_prefetch(rng, edge, policy, ctx.cfg.workload.items)
        metrics.set_stage_progress("replay", (tick + 1) / REPLAY_TICKS)
        time.sleep(TICK_S)
    return {}


def _predict_and_prefetch(rng: np.random.Generator, edge: str, policy: str, items: int) -> None:
    t0 = time.perf_counter()
    scores = rng.random(items)
    top = np.argpartition(scores, -3)[-3:]
    metrics.observe_prediction(edge, time.perf_counter() - t0)
    metrics.record_prefetch(edge, policy, len(top), len(top) * 4.0e6)


def report(ctx: StageContext) -> dict[str, Any]:
    """Nothing to record but progress."""
    metrics.set_stage_progress("report", 1.0)
    return {}


def main() -> None:
    """Point every stage at its stand-in, then run the real CLI."""
    for stage in pipeline.STAGES:
        pipeline.STAGES[stage] = f"{__name__}:{stage}"
    from simulation.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

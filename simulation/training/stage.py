"""The `train` pipeline stage: federated rounds, then the local_only and centralized baselines.

Output (merged into results.json): `federated` with the strategy, engine, per-round metrics,
privacy settings, personalization and the two baselines, all evaluated on the same per-edge
held-out slices; `federated.round_s` (wall seconds per round: mean and per round, from the
round records) and `timings.train_round_mean_s`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aggregator.strategies import sampled_edges
from monitoring import metrics
from simulation.pipeline import StageContext
from simulation.training.baselines import train_baselines
from simulation.training.federation import run_federation
from simulation.training.plan import FederationPlan, plan_federation
from simulation.training.privacy import dp_summary, largest_edge_share

log = logging.getLogger(__name__)
ROUND_KEYS = ("round", "train_loss", "eval_loss", "eval_hit_at_k", "eval_ndcg_at_k", "failures",
              "eval_failures", "sampled", "replies", "aggregated", "failure_reasons")


def _final(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    last = rounds[-1] if rounds else {}
    return {k: last[k] for k in ("round", "train_loss", "eval_loss", "eval_hit_at_k", "eval_ndcg_at_k")
            if k in last}


def train_stage(ctx: StageContext) -> dict[str, Any]:
    """Run federated training on ctx.run and report it beside the baselines."""
    plan = plan_federation(ctx.cfg, ctx.run)
    ctx.console.print(f"federated: {plan.settings.strategy} on {len(plan.edges)} edges, "
                      f"{plan.settings.rounds} rounds, {plan.engine} engine")
    summary = run_federation(plan)
    rounds = summary["rounds"]
    seconds = [r["seconds"] for r in rounds if "seconds" in r]
    fed: dict[str, Any] = {
        "strategy": plan.settings.strategy, "engine": plan.engine, "edges": [e.edge_id for e in plan.edges],
        "top_k": plan.settings.top_k, "resumed_from_round": summary.get("resumed_from_round", 0),
        "rounds": [{k: r[k] for k in ROUND_KEYS if k in r} for r in rounds],
        "final": _final(rounds), "dp": _privacy(ctx, plan, summary.get("dp", {"enabled": False}), rounds),
        "replies_checked": summary.get("replies_checked", 0),
        "itemcf": summary.get("itemcf", {"status": "not run"}),  # the analytics round (aggregator/analytics.py)
    }
    if seconds:
        fed["round_s"] = round_times(seconds)
        log.info("train: %.2f s/round (mean of %d federated rounds)", fed["round_s"]["mean"], len(seconds))
    if "personalized" in summary:
        fed["personalized"] = summary["personalized"]
    if ctx.cfg.federated.baselines:
        fed.update(train_baselines(plan.edges, plan.settings, Path(plan.settings.model_dir)))
    for name in ("local_only", "centralized"):
        if isinstance(fed.get(name), dict):
            _record_baseline(name, fed[name])
    ctx.console.print(_line(fed))
    timings = {"train_round_mean_s": round(sum(seconds) / len(seconds), 3)} if seconds else {}
    return {"federated": fed, "timings": timings}


def round_times(seconds: list[float]) -> dict[str, Any]:
    """results.json `federated.round_s`: the mean wall time of a round and each round's."""
    return {"mean": round(sum(seconds) / len(seconds), 3), "per_round": [round(s, 3) for s in seconds]}


def _privacy(ctx: StageContext, plan: FederationPlan, settings: dict[str, Any],
             rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """federated.dp: the wrapper's settings and the epsilon of the rounds run (all, after a resume)."""
    if not settings.get("enabled"):
        return settings
    users = int((ctx.results.get("workload") or {}).get("users") or ctx.cfg.workload.users)
    rounds_run = max((int(r.get("round", 0)) for r in rounds), default=0)
    edges = [e.edge_id for e in plan.edges]
    share = largest_edge_share(ctx.run.features / "examples", edges, sampled_edges(plan.settings))
    dp = dp_summary(settings, plan.settings, ctx.cfg.federated.dp_delta, users, rounds_run, share)
    ctx.console.print(f"privacy: edge-level (epsilon, delta) = ({dp['epsilon']:.3f}, {dp['delta']:.3g}) "
                      f"after {rounds_run} rounds" + ("" if dp["epsilon_holds"] else f" ({dp['why_not']})"))
    return dp


def _line(fed: dict[str, Any]) -> str:
    k = fed["top_k"]
    parts = [f"federated hit@{k} {fed['final'].get('eval_hit_at_k', float('nan')):.4f}"]
    for name in ("local_only", "centralized"):
        if name in fed:
            parts.append(f"{name} {fed[name]['eval_hit_at_k']:.4f}")
    if "personalized" in fed and fed["personalized"].get("personalized"):
        parts.append(f"personalized {fed['personalized']['personalized']['hit_at_k']:.4f}")
    return " | ".join(parts)


def _record_baseline(name: str, result: dict[str, Any]) -> None:
    """Show a baseline's final quality beside the federated model's on the dashboard."""
    loss, hit = result.get("train_loss"), result.get("eval_hit_at_k")
    if isinstance(loss, float) and isinstance(hit, float):
        metrics.record_round(int(result.get("epochs", 0)), loss, hit, model=name)

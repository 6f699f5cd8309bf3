"""Benchmark: seconds per federated round on 8 edges vs Flower rounds with no-op clients.

Both runs use the simulation engine, the same number of edges and rounds and the same
model arrays on the wire, in the same process; the no-op ClientApp returns the global
arrays untouched, so its rounds measure Flower's own overhead. Also prints the learning
curve and federated vs local_only vs centralized hit@K on the synthetic workload.

    python -m benchmarks.bench_federated [--edges 8] [--rounds 5] [--json PATH] [--no-baselines]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from rich.console import Console

from benchmarks.harness import figure
from edge_nodes.learning.model import ModelSpec, init_params
from simulation.config import ExperimentConfig, build_config
from simulation.pipeline import StageContext, run_stage
from simulation.rundir import RunDir
from tests.fixtures_federated import write_synthetic_run

log = logging.getLogger("bench_federated")


def noop_client() -> ClientApp:
    """Edges that do no work: reply with the arrays they got."""
    app = ClientApp()

    @app.train()
    def fit(msg: Message, context: Context) -> Message:
        content = RecordDict({"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def held_out(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    return app


def noop_seconds_per_round(spec: ModelSpec, edges: int, rounds: int) -> list[float]:
    """Per-round wall time of FedAvg rounds over no-op clients (same arrays, same engine)."""
    import ray
    from flwr.simulation import run_simulation

    marks: list[float] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        def mark(rnd: int, arrays: ArrayRecord) -> None:
            marks.append(time.perf_counter())
        FedAvg(min_train_nodes=edges, min_evaluate_nodes=edges, min_available_nodes=edges).start(
            grid, ArrayRecord(init_params(spec, np.random.default_rng(0))), num_rounds=rounds,
            train_config=ConfigRecord(), evaluate_fn=mark)

    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"object_store_memory": 256 * 1024 * 1024, "logging_level": "ERROR",
                             "log_to_driver": False, "include_dashboard": False}}
    try:
        run_simulation(server_app=server, client_app=noop_client(), num_supernodes=edges,
                       backend_config=backend)  # type: ignore[arg-type]
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return list(np.diff(marks))


def config(edges: int, rounds: int, items: int, baselines: bool = True) -> ExperimentConfig:
    """The bench experiment; without baselines only the rounds run (no local_only, centralized, personalization)."""
    return build_config({
        "run": {"seed": 1}, "workload": {"edges": edges, "items": items}, "features": {"history_len": 5},
        "cache": {"capacity": 10}, "model": {"dim": 32, "batch_size": 128, "lr": 0.02},
        "federated": {"rounds": rounds, "min_nodes": 2, "local_epochs": 1,
                      "personalize_epochs": 1 if baselines else 0, "baselines": baselines}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--users", type=int, default=150, help="users per edge")
    parser.add_argument("--out", "--json", dest="out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false",
                        help="time the rounds only: skip local_only, centralized and personalization")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench-federated-")) / "run"
    write_synthetic_run(root, n_edges=args.edges, n_items=args.items, history_len=5, users=args.users,
                        events=25, seed=1)
    cfg = config(args.edges, args.rounds, args.items, args.baselines)
    ctx = StageContext(cfg=cfg, run=RunDir(root), console=Console(quiet=True))
    run_stage("train", ctx)
    report = _report(args, ctx.results["federated"], [r["seconds"] for r in _round_records(root)],
                     noop_seconds_per_round(ModelSpec(args.items, 32, 5), args.edges, args.rounds))
    text = json.dumps(report, indent=2)
    print(text)  # the benchmark's own output
    if args.out:
        args.out.write_text(text + "\n")


def _report(args: argparse.Namespace, fed: dict[str, Any], real: list[float], noop: list[float]) -> dict[str, Any]:
    """The printed JSON: seconds per round vs no-op clients (also as a bench table figure), quality."""
    report: dict[str, Any] = {
        "edges": args.edges, "rounds": args.rounds, "items": args.items, "users_per_edge": args.users,
        "seconds_per_round": float(np.mean(real)), "noop_seconds_per_round": float(np.mean(noop)),
        "ratio": float(np.mean(real) / np.mean(noop)),
        "seconds_by_round": [round(x, 3) for x in real], "noop_seconds_by_round": [round(x, 3) for x in noop],
        "figures": _figures(args.edges, real, noop),
        "train_loss_by_round": [round(r["train_loss"], 4) for r in fed["rounds"]],
        "eval_hit_at_k_by_round": [round(r["eval_hit_at_k"], 4) for r in fed["rounds"]],
    }
    if args.baselines:
        report[f"hit_at_{fed['top_k']}"] = {
            "federated": fed["final"]["eval_hit_at_k"],
            "personalized": fed["personalized"]["personalized"]["hit_at_k"],
            "local_only": fed["local_only"]["eval_hit_at_k"], "centralized": fed["centralized"]["eval_hit_at_k"]}
    return report


def _figures(edges: int, real: list[float], noop: list[float]) -> list[dict[str, Any]]:
    """Steady rounds (2 on: actors warm) and the first round (actor start-up), each vs no-op clients."""
    base = "Flower no-op clients, same arrays"
    rows = [figure(f"federated s/round, {edges} edges", float(np.mean(real)), "s", base, float(np.mean(noop)))]
    if len(real) > 1 and len(noop) > 1:
        rows.append(figure(f"federated steady s/round, {edges} edges", float(np.median(real[1:])), "s", base,
                           float(np.median(noop[1:])), "median of rounds 2+"))
    return rows


def _round_records(root: Path) -> list[dict[str, Any]]:
    lines = (root / "models" / "rounds.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


if __name__ == "__main__":
    main()

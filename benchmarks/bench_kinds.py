"""Benchmark: every `model.kind`'s federated round time and top-k inference, against `pooled`
and the bare scoring floor measured in the same run.

Each kind trains the same synthetic run (write_synthetic_run: 4 edges, the default's 3,000
items) for a few real Flower rounds with the simulation engine and no baselines; its steady
s/round (median of rounds 2+, the first round pays for XLA's compile and the Ray actors) is
reported against `pooled`'s. Inference is ModelPredictor.predict (numpy, k=3, what the replay
calls) over the same rows for every kind, against the floor of full-catalog scoring: a matmul
of a random state against the output embeddings plus the same top-k, in the same row blocks
(model.row_blocks), so the ratio is what the kind's encoder and the shared head cost beyond
it. `pooled` is also put against that floor scored as one block of every row, the way
inference ran before row blocks (the issue's 103k predictions/s was measured that way).

    python -m benchmarks.bench_kinds [--rounds 3] [--items 3000] [--rows 20000] [--json PATH]
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
from rich.console import Console

from benchmarks.harness import figure
from edge_nodes.learning import model
from edge_nodes.learning.kinds import KINDS
from edge_nodes.learning.predictors import ModelPredictor
from simulation.config import build_config
from simulation.pipeline import StageContext, run_stage
from simulation.rundir import RunDir
from tests.fixtures_federated import write_synthetic_run

EDGES, DIM, K = 4, 32, 3


def train_kind(root: Path, kind: str, rounds: int, items: int, history_len: int) -> dict[str, Any]:
    """Real Flower rounds of one kind on the run at `root`: seconds by round and the final hit@k."""
    cfg = build_config({
        "run": {"seed": 1}, "workload": {"edges": EDGES, "items": items},
        "features": {"history_len": history_len}, "cache": {"capacity": 10},
        "model": {"kind": kind, "dim": DIM, "batch_size": 512, "lr": 0.02},
        "federated": {"rounds": rounds, "min_nodes": 2, "local_epochs": 1, "personalize_epochs": 0,
                      "baselines": False}})
    ctx = StageContext(cfg=cfg, run=RunDir(root), console=Console(quiet=True))
    run_stage("train", ctx)
    lines = (root / "models" / "rounds.jsonl").read_text().splitlines()
    seconds = [json.loads(x)["seconds"] for x in lines if x.strip()]
    fed = ctx.results["federated"]
    return {"seconds_by_round": [round(s, 3) for s in seconds],
            "steady_s_per_round": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
            "hit_at_k": fed["rounds"][-1]["eval_hit_at_k"], "params": root / "models" / f"round-{len(seconds)}.npz"}


def predictions_per_s(fn: Any, rows: int, repeats: int = 3) -> float:
    """Best of `repeats` timings of fn() over `rows` rows, as rows per second."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return rows / best


def inference(params_path: Path, rows: int, seed: int) -> float:
    """ModelPredictor.predict's rows/s (k=3) on random histories of the model's own shape."""
    pred = ModelPredictor.from_npz(params_path)
    spec = pred.spec
    rng = np.random.default_rng(seed)
    hist = rng.integers(0, spec.n_items, size=(rows, spec.history_len))
    dev, hour = rng.integers(0, spec.n_devices, rows), rng.integers(0, spec.n_hours, rows)
    pred.predict(hist[:256], dev[:256], hour[:256], K)  # warm
    return predictions_per_s(lambda: pred.predict(hist, dev, hour, K), rows)


def scoring_floor(items: int, rows: int, seed: int, blocked: bool) -> float:
    """Rows/s of the bare full-catalog scoring: state @ out_emb.T + bias, then the same top-k,
    in model.row_blocks (`blocked`) or over all rows at once."""
    rng = np.random.default_rng(seed)
    state = rng.standard_normal((rows, DIM)).astype(np.float32)
    out = rng.standard_normal((items, DIM)).astype(np.float32)
    bias = rng.standard_normal(items).astype(np.float32)
    bounds = model.row_blocks(rows, items) if blocked else [(0, rows)]

    def run() -> None:
        for a, b in bounds:
            z = state[a:b] @ out.T
            z += bias
            model.pop_top_k(z, K + 1)
    return predictions_per_s(run, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--users", type=int, default=200, help="users per edge")
    parser.add_argument("--history-len", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20000, help="rows per inference timing")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated; pooled is always run")
    parser.add_argument("--out", "--json", dest="out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    kinds = ["pooled"] + [k for k in args.kinds.split(",") if k and k != "pooled"]
    base = Path(tempfile.mkdtemp(prefix="bench-kinds-"))
    trained: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        root = base / kind / "run"
        write_synthetic_run(root, n_edges=EDGES, n_items=args.items, history_len=args.history_len,
                            users=args.users, events=25, seed=1)
        trained[kind] = train_kind(root, kind, args.rounds, args.items, args.history_len)
    floors = {"blocked": scoring_floor(args.items, args.rows, seed=2, blocked=True),
              "one_block": scoring_floor(args.items, args.rows, seed=2, blocked=False)}
    report = _report(args, trained, {k: inference(v["params"], args.rows, seed=3) for k, v in trained.items()},
                     floors)
    text = json.dumps(report, indent=2)
    print(text)  # the benchmark's own output
    if args.out:
        args.out.write_text(text + "\n")


def _report(args: argparse.Namespace, trained: dict[str, dict[str, Any]], infer: dict[str, float],
            floors: dict[str, float]) -> dict[str, Any]:
    """The printed JSON: per kind s/round vs pooled, predictions/s vs the scoring floors
    (`blocked`: in model.row_blocks; `one_block`: every row at once), hit@k."""
    pooled = trained["pooled"]["steady_s_per_round"]
    figures = []
    for kind, t in trained.items():
        if kind != "pooled":
            figures.append(figure(f"{kind} steady s/round, {EDGES} edges", t["steady_s_per_round"], "s",
                                  "pooled, same run", pooled, "median of rounds 2+"))
    for kind, rate in infer.items():
        figures.append(figure(f"{kind} inference, {args.items} items, k={K}", rate, "rows/s",
                              "bare scoring matmul + top-k, same row blocks", floors["blocked"]))
    figures.append(figure(f"pooled inference, {args.items} items, k={K}, vs one block", infer["pooled"], "rows/s",
                          f"bare scoring matmul + top-k, all {args.rows} rows in one block", floors["one_block"],
                          "scoring as before row blocks"))
    return {
        "edges": EDGES, "rounds": args.rounds, "items": args.items, "users_per_edge": args.users,
        "history_len": args.history_len, "figures": figures,
        "kinds": {k: {"seconds_by_round": t["seconds_by_round"], "steady_s_per_round": t["steady_s_per_round"],
                      "hit_at_k": t["hit_at_k"], "inference_rows_per_s": round(infer[k])}
                  for k, t in trained.items()},
        "scoring_floor_rows_per_s": {k: round(v) for k, v in floors.items()},
    }


if __name__ == "__main__":
    main()

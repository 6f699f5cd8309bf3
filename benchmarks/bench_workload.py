"""Benchmark the workload generator: events/s and peak RSS, against baselines from the same run.

    python benchmarks/bench_workload.py              # 1M events (experiments/default.toml)
    python benchmarks/bench_workload.py --events 20000000
    python benchmarks/bench_workload.py --learnability   # also hit@10: next-item model vs popularity
    python benchmarks/bench_workload.py --json out.json  # also the figures, for `python -m benchmarks`

Each measurement runs in a fresh subprocess so its peak RSS is its own. Baselines: drawing
the same number of uniform random events with numpy alone (the floor), and writing a
sample of the same rows with json.dumps per row (what a naive writer costs, extrapolated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GENERATE = """
import sys, time, resource, json
from simulation.config import load_config
from simulation.rundir import RunDir
from simulation.workload.generate import generate
cfg = load_config(sys.argv[1], sys.argv[3:])
t = time.perf_counter()
s = generate(cfg, RunDir(__import__('pathlib').Path(sys.argv[2])))
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "summary": {k: s[k] for k in ("events", "lines", "zipf_exponent", "top1pct_share",
                                                  "continuation_share", "mean_pairwise_jsd")}}))
"""

NUMPY_FLOOR = """
import sys, time, resource, json, numpy as np
n = int(sys.argv[1]); rng = np.random.default_rng(0); t = time.perf_counter()
for lo in range(0, n, 500_000):
    k = min(500_000, n - lo)
    cols = [rng.integers(0, 4000, k), rng.integers(0, 3000, k), rng.integers(0, 5, k), rng.integers(1, 120, k),
            rng.integers(0, 28 * 86400, k), rng.integers(0, 8, k)]
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

JSON_DUMPS = """
import sys, time, json, numpy as np
n = 200_000; rng = np.random.default_rng(0); t = time.perf_counter()
with open(sys.argv[1], "w") as f:
    for i in range(n):
        f.write(json.dumps({"user_id": f"U{rng.integers(1, 4000):06d}", "device": "TV",
                            "content_id": f"C{rng.integers(1, 3000):05d}", "duration": int(rng.integers(1, 120)),
                            "timestamp": "2025-04-12 22:30:00", "edge_id": "edge-00"}) + "\\n")
print(json.dumps({"seconds_per_event": (time.perf_counter() - t) / n}))
"""


def _py(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(events: int, config: str, tmp: Path) -> dict:
    """Generate `events` events and the two baselines, each in its own subprocess; figures with ratios."""
    from benchmarks.harness import figure

    gen = _py(GENERATE, config, str(tmp), f"workload.events={events}")
    floor = _py(NUMPY_FLOOR, str(events))
    naive = _py(JSON_DUMPS, str(tmp / "naive.jsonl"))
    rate, floor_rate = events / gen["seconds"], events / floor["seconds"]
    figures = [
        figure("generate events/s", rate, "ev/s", "numpy uniform draw (floor)", floor_rate),
        figure("generate events/s", rate, "ev/s", "json.dumps per row (naive writer)",
               1.0 / naive["seconds_per_event"]),
        figure("generate peak RSS", gen["rss_mb"], "MB", "numpy uniform draw (floor)", floor["rss_mb"]),
    ]
    return {"events": events, "figures": figures, "generate": gen, "numpy_floor": floor, "json_dumps": naive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--config", default=str(ROOT / "experiments" / "default.toml"))
    ap.add_argument("--learnability", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures (value, baseline, ratio) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(args.events, args.config, Path(tmp))
        gen, floor, naive = res["generate"], res["numpy_floor"], res["json_dumps"]
        n = args.events
        print(f"generate: {n:,} events in {gen['seconds']:.2f} s = {n / gen['seconds']:,.0f} events/s, "
              f"peak RSS {gen['rss_mb']:,.0f} MB")
        print(f"numpy-only uniform draw of the same events: {floor['seconds']:.2f} s "
              f"(generate is {gen['seconds'] / floor['seconds']:.1f}x the floor), peak RSS {floor['rss_mb']:,.0f} MB")
        naive_s = naive["seconds_per_event"] * n
        print(f"json.dumps per row, extrapolated: {naive_s:.2f} s for the writing alone "
              f"(generate end to end is {naive_s / gen['seconds']:.1f}x faster)")
        print("workload:", json.dumps(gen["summary"]))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        if args.learnability:
            from simulation.config import load_config
            from simulation.workload.learnability import evaluate_run

            cfg = load_config(args.config, [f"workload.events={n}"])
            print("hit@10:", evaluate_run(Path(tmp), cfg.workload.start_date,
                                          cfg.workload.days - cfg.split.days_in(cfg.workload.days)))


if __name__ == "__main__":
    main()

"""End to end: wall time and peak RSS of one experiment, by stage, in a subprocess.

    python -m benchmarks.bench_e2e [--config experiments/default.toml] [--set key=value ...] [--json PATH]

Runs `python -m simulation.cli run` and samples the RSS of its whole process tree (the Spark
JVM, Ray workers and the embedded Redis are descendants). Stage boundaries come from
results.json, which the pipeline rewrites after every stage, so each sample is charged to
the stage that was running. Baselines from the same run: each stage's share of the
pipeline's total, and the resident size of an idle interpreter that imported the CLI.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import ROOT, figure, python, run_sampled, tree_top

STAGES = ("generate", "features", "train", "replay", "report")
IDLE = "import simulation.cli, time; time.sleep(1.0)"


class StageClock:
    """Charge each memory sample to the stage running when it was taken."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.mtime = 0.0
        self.done: set[str] = set()
        self.peak: dict[str, float] = {}
        self.top: dict[str, list[tuple[str, float]]] = {}  # biggest processes at each stage's peak

    def current(self) -> str:
        """The first stage without a timing in results.json yet."""
        try:
            mtime = self.results.stat().st_mtime
            if mtime != self.mtime:
                self.mtime = mtime
                self.done = {k[:-2] for k in json.loads(self.results.read_text()).get("timings", {})}
        except (OSError, ValueError):
            pass  # not written yet, or caught mid-write: keep the last view
        return next((s for s in STAGES if s not in self.done), "exit")

    def __call__(self, elapsed: float, total_mb: float, proc: psutil.Process) -> None:
        stage = self.current()
        if total_mb > self.peak.get(stage, 0.0):
            self.peak[stage] = total_mb
            self.top[stage] = tree_top(proc)


def idle_rss_mb(workdir: Path) -> float:
    """Peak RSS of an interpreter that only imported the CLI (the floor every stage sits on)."""
    _, _, sample = run_sampled(list(python("-c", IDLE)), 60, workdir / "idle.log", interval=0.1)
    return sample.peak_rss_mb


def measure(config: Path, overrides: list[str], workdir: Path, logs: Path,
            timeout_s: float = 1500) -> dict[str, Any]:
    """Run the experiment once; wall time, timings and peak tree RSS per stage, with ratios."""
    out = workdir / "run"
    logs.mkdir(parents=True, exist_ok=True)
    argv = list(python("-m", "simulation.cli", "run", "--config", str(config), "--out", str(out)))
    for o in overrides:
        argv += ["--set", o]
    clock = StageClock(out / "results.json")
    code, wall, sample = run_sampled(argv, timeout_s, logs / "e2e_run.log", on_sample=clock)
    if code != 0:
        raise RuntimeError(f"experiment exited {code} after {wall:.0f} s; see {logs / 'e2e_run.log'}")
    results = json.loads((out / "results.json").read_text())
    timings = results["timings"]
    idle = idle_rss_mb(logs)
    total = float(timings["total_s"])
    figures = [figure("e2e wall (subprocess)", wall, "s", "pipeline total_s", total,
                      "ratio-1 = imports, start-up, shutdown")]
    for stage in STAGES:
        if f"{stage}_s" in timings:
            figures.append(figure(f"e2e {stage} wall", timings[f"{stage}_s"], "s", "pipeline total_s", total))
    for stage in STAGES:
        if stage in clock.peak:
            figures.append(figure(f"e2e {stage} peak RSS (tree)", clock.peak[stage], "MB",
                                  "idle CLI interpreter", idle))
    figures.append(figure("e2e peak RSS (tree)", sample.peak_rss_mb, "MB", "idle CLI interpreter", idle))
    figures += _train_split(results)
    return {"figures": figures, "config": str(config), "overrides": overrides, "timings": timings,
            "events": results.get("workload", {}).get("events"), "stage_peak_rss_mb": clock.peak,
            "stage_peak_processes": clock.top,
            "idle_rss_mb": round(idle, 1), "rss_series": sample.series[::4]}


def _train_split(results: dict[str, Any]) -> list[dict[str, Any]]:
    """How much of the train stage the federated rounds are (the rest: Ray start, baselines, personalization)."""
    timings, rounds = results["timings"], results.get("federated", {}).get("rounds", [])
    if "train_round_mean_s" not in timings or not rounds:
        return []
    in_rounds = float(timings["train_round_mean_s"]) * len(rounds)
    return [figure(f"e2e train: {len(rounds)} federated rounds", in_rounds, "s", "train stage", float(timings["train_s"]),
                   "the rest: Ray start-up, local_only + centralized baselines, personalization")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "default.toml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--logs", type=Path, default=ROOT / "benchmarks" / "out" / "e2e-logs")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        report = measure(a.config, a.overrides, Path(tmp), a.logs)
    for f in report["figures"]:
        print(f"{f['figure']:<34} {f['value']:>10} {f['unit']:<3} ratio {f['ratio']} vs {f['baseline']}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

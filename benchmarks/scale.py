"""Scale sweep: how time and peak memory grow with events and with edges.

    python -m benchmarks.scale [--quick] [--features-16m] [--json PATH]

Each point runs the real CLI stages (`python -m simulation.cli <stage>`) on the default
experiment with overrides, every stage in a fresh subprocess so its peak RSS (process tree,
JVM included) is its own. Users grow with events (250 events per user, as in the default), so
a bigger point is a bigger service with the same viewing habits, not longer histories.
Which stages each axis covers (the 20-minute budget of `make bench` on 2 cores): see PLANS.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, figure, python, run_sampled

log = logging.getLogger("bench_scale")
CONFIG = ROOT / "experiments" / "default.toml"
EVENTS_PER_USER = 250
ROUNDS_ONLY = ["federated.rounds=2", "federated.baselines=false", "federated.personalize_epochs=0"]


@dataclass(frozen=True)
class Point:
    """One sweep point: the stages it runs and its config overrides."""

    axis: str  # "events" or "edges"
    value: int
    stages: tuple[str, ...]
    overrides: tuple[str, ...]


def events_point(events: int, stages: tuple[str, ...]) -> Point:
    users = max(100, events // EVENTS_PER_USER)
    return Point("events", events, stages, (f"workload.events={events}", f"workload.users={users}"))


def edges_point(edges: int, events: int) -> Point:
    users = max(100, events // EVENTS_PER_USER)
    return Point("edges", edges, ("generate", "features", "train"),
                 (f"workload.edges={edges}", f"workload.events={events}", f"workload.users={users}", *ROUNDS_ONLY))


GF = ("generate", "features")
# Events: generate + features at every point except the Spark job at 16M unless --features-16m
# (it alone took 330 s here; without it the report extrapolates it from the slope); edges: generate + features + 2 federated
# rounds at 250k events (the same data split over more edges: growth is per-edge overhead).
EDGES_POINTS = [edges_point(n, 250_000) for n in (4, 16, 64)]
PLANS: dict[str, list[Point]] = {
    "full": [events_point(250_000, GF), events_point(1_000_000, GF), events_point(4_000_000, GF),
             events_point(16_000_000, ("generate",)), *EDGES_POINTS],
    # --features-16m: the Spark job at 16M events too (about 5.5 more minutes here: past 20 in all)
    # 16M events need a bigger Spark heap: the default 2g ran out of memory in the examples window here.
    "full16": [events_point(250_000, GF), events_point(1_000_000, GF), events_point(4_000_000, GF),
               Point("events", 16_000_000, GF, (*events_point(16_000_000, GF).overrides,
                                                 "features.driver_memory=6g")), *EDGES_POINTS],
    "quick": [*(events_point(n, ("generate",)) for n in (250_000, 1_000_000, 4_000_000)),
              *(edges_point(n, 100_000) for n in (4, 16))],
}


def run_point(point: Point, workdir: Path, logs: Path, timeout_s: float) -> dict[str, Any]:
    """Run a point's stages one after the other; per stage: stage seconds, wall and peak RSS."""
    out = workdir / f"{point.axis}-{point.value}"
    logs.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"axis": point.axis, "value": point.value, "overrides": list(point.overrides),
                           "stages": {}}
    for stage in point.stages:
        argv = list(python("-m", "simulation.cli", stage, "--config", str(CONFIG), "--out", str(out)))
        for o in point.overrides:
            argv += ["--set", o]
        log_path = logs / f"{out.name}-{stage}.log"
        code, wall, sample = run_sampled(argv, timeout_s, log_path)
        if code != 0:
            row["error"] = f"{stage} exited {code} after {wall:.0f} s (log {log_path})"
            break
        timings = json.loads((out / "results.json").read_text()).get("timings", {})
        row["stages"][stage] = {"s": timings.get(f"{stage}_s", wall), "wall_s": round(wall, 2),
                                "peak_rss_mb": round(sample.peak_rss_mb, 1),
                                "peak_process_rss_mb": round(sample.peak_process_mb, 1),
                                "kernel_peak_rss_mb": round(sample.kernel_peak_mb, 1)}
    shutil.rmtree(out, ignore_errors=True)  # 16M events are ~2 GB of JSONL
    return row


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y on log x: 1.0 = linear growth."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else float("nan")


def _series(rows: list[dict[str, Any]], axis: str, stage: str, key: str) -> tuple[list[int], list[float]]:
    pts = [(r["value"], r["stages"][stage][key]) for r in rows if r["axis"] == axis and stage in r["stages"]]
    return [p[0] for p in pts], [p[1] for p in pts]


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Growth vs linear: log-log slope per stage, and each point vs a linear extrapolation."""
    out = []
    for stage in ("generate", "features"):
        for key, unit in (("s", "s"), ("peak_rss_mb", "MB")):
            xs, ys = _series(rows, "events", stage, key)
            if len(xs) < 2:
                continue
            what = "time" if key == "s" else "peak RSS"
            out.append(figure(f"scale {stage} {what} vs events: log-log slope", slope(xs, ys), "",
                              "linear growth (slope 1)", 1.0, f"{min(xs):,}..{max(xs):,} events"))
            ref = xs.index(1_000_000) if 1_000_000 in xs else 0
            for x, y in zip(xs, ys, strict=True):
                if x != xs[ref]:
                    out.append(figure(f"scale {stage} {what} @ {x / 1e6:g}M events", y, unit,
                                      f"{xs[ref] / 1e6:g}M point x {x / xs[ref]:g} (linear)", ys[ref] * x / xs[ref]))
    for stage in ("generate", "features", "train"):
        xs, ys = _series(rows, "edges", stage, "s")
        for x, y in zip(xs[1:], ys[1:], strict=True):
            out.append(figure(f"scale {stage} time @ {x} edges", y, "s", f"same events, {xs[0]} edges", ys[0]))
    return out


def measure(plan: str, workdir: Path, logs: Path, timeout_s: float = 900) -> dict[str, Any]:
    """Run every point of the plan; rows and figures (a failed point is kept with its error)."""
    rows = []
    for p in PLANS[plan]:
        log.info("scale point: %s=%s %s", p.axis, p.value, "+".join(p.stages))
        rows.append(run_point(p, workdir, logs, timeout_s))
    return {"plan": plan, "events_per_user": EVENTS_PER_USER, "points": rows, "figures": figures(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small points only (a few minutes)")
    ap.add_argument("--features-16m", action="store_true", help="also run the Spark job at 16M events")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--logs", type=Path, default=ROOT / "benchmarks" / "out" / "scale-logs")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        plan = "quick" if a.quick else "full16" if a.features_16m else "full"
        res = measure(plan, Path(tmp), a.logs, timeout_s=1500)
    for r in res["points"]:
        print(r["axis"], r["value"], json.dumps(r["stages"]), r.get("error", ""))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

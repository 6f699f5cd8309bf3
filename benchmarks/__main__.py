"""`python -m benchmarks` (`make bench`): run every benchmark, write bench.json and the bench report.

    python -m benchmarks                      # the whole suite (under 20 minutes on 2 cores)
    python -m benchmarks --quick              # smaller sizes, a few minutes
    python -m benchmarks --scale-16m          # also the Spark job at 16M events (past 20 minutes)
    python -m benchmarks --only features,replay
    python -m benchmarks --list

Each benchmark runs in a fresh subprocess (its peak RSS is its own); every figure is a
ratio against a baseline measured in the same run. Outputs: bench.json (all figures and
raw numbers), benchmarks/out/bench.md and benchmarks/out/scale.png, logs in benchmarks/out/.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.harness import ROOT, machine, run_all, write_json
from benchmarks.report import print_table, write_report
from benchmarks.suite import benches, select


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The CLI's options."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    ap.add_argument("--scale-16m", action="store_true",
                    help="the scale sweep also runs the Spark job at 16M events (about 5.5 more minutes)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (federated = every edge count)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--json", type=Path, default=ROOT / "bench.json", help="where bench.json goes")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "out", help="report, plot and logs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected benchmarks; write bench.json, bench.md and the plot; print the table."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    console = Console(width=max(140, Console().width))
    chosen = select(benches(args.quick, args.scale_16m), [s for s in args.only.split(",") if s])
    if args.list:
        for b in chosen:
            console.print(f"{b.name:<14} {' '.join(b.argv[1:])}")
        return {}
    t0 = time.perf_counter()
    payload: dict[str, Any] = {"mode": "quick" if args.quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "machine": machine(), "results": {}}

    def done(res: dict[str, Any]) -> None:  # keep bench.json current: a later crash loses nothing
        payload["results"][res["name"]] = res
        payload["wall_s"] = round(time.perf_counter() - t0, 1)
        write_json(args.json, payload)
        console.print(f"[bold]{res['name']}[/] {res['wall_s']:.0f} s, peak RSS {res['peak_rss_mb']:.0f} MB"
                      + (f" [red]{res['error'].splitlines()[0]}" if "error" in res else ""))

    run_all(chosen, args.out_dir, done)
    payload["wall_s"] = round(time.perf_counter() - t0, 1)
    payload["load_end"] = [round(x, 2) for x in os.getloadavg()]
    md = write_report(payload, args.json, args.out_dir)
    print_table(payload["results"], console)
    console.print(f"bench.json: {args.json}  report: {md}  ({payload['wall_s']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()

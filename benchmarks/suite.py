"""Which benchmarks `python -m benchmarks` runs, at full size or --quick, and how to read each one.

Every entry is a fresh subprocess (harness.run_bench). bench_replay.py has no JSON output
yet (another change to it is in flight), so its printed req/s lines are parsed here.
TODO(lead): once bench_replay.py takes `--json PATH`, switch its entry to that and drop
parse_replay.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchmarks.harness import Bench, figure, python

RATE = re.compile(r"^(?P<name>\S.*?)\s+(?P<rate>\d+(?:\.\d+)?) req/s\s*$")
HIT = re.compile(r"^hit ratio:\s*(?P<rest>.+)$")
RAW, LCS = "raw pipelined GETs", "libCacheSim LRU"


def parse_replay(text: str, json_path: Path) -> dict[str, Any]:
    """Figures from bench_replay.py's printed lines: every Redis path vs raw GETs and vs libCacheSim.

    Rows are matched by their req/s suffix, baselines by name ("raw" / "libCacheSim"), so new
    or renamed Redis rows still land in the table.
    """
    rates: dict[str, float] = {}
    hit_line = ""
    for line in text.splitlines():
        if m := RATE.match(line.strip()):
            rates[m["name"].strip()] = float(m["rate"])
        elif m := HIT.match(line.strip()):
            hit_line = m["rest"]
    raw = next(v for k, v in rates.items() if "raw" in k.lower())
    lcs = next(v for k, v in rates.items() if "libcachesim" in k.lower())
    figures = []
    for name, rate in rates.items():
        if "raw" in name.lower() or "libcachesim" in name.lower():
            continue
        figures.append(figure(name, rate, "req/s", RAW, raw))
        figures.append(figure(name, rate, "req/s", LCS, lcs))
    figures.append(figure(RAW, raw, "req/s", LCS, lcs))
    return {"figures": figures, "req_per_s": rates, "hit_ratio": hit_line,
            "parsed_from": "printed output (TODO: --json once bench_replay.py has it)"}


def benches(quick: bool) -> list[Bench]:
    """The whole suite in run order; --quick shrinks every size so it finishes in a few minutes."""
    events = "250000" if quick else "1000000"
    edges = (4, 16) if quick else (4, 16, 64)
    rounds = "3" if quick else "4"
    e2e_sets = ["--set", "workload.events=250000", "--set", "federated.rounds=3"] if quick else []
    out = [
        Bench("workload", python("benchmarks/bench_workload.py", "--events", events, "--json", "{json}"), 300),
        Bench("features", python("benchmarks/bench_features.py", "--events", events, "--json", "{json}"), 900),
    ]
    out += [Bench(f"federated_{n}", python("-m", "benchmarks.bench_federated", "--edges", str(n), "--rounds",
                                           rounds, "--no-baselines", "--json", "{json}"), 600)
            for n in edges]
    out += [
        Bench("replay", python("benchmarks/bench_replay.py", "--requests", "50000" if quick else "200000"),
              300, parse=parse_replay),
        Bench("e2e", python("-m", "benchmarks.bench_e2e", *e2e_sets, "--json", "{json}", "--logs", "{logs}"), 1500),
        Bench("scale", python("-m", "benchmarks.scale", *(["--quick"] if quick else []), "--json", "{json}",
                                     "--logs", "{logs}"),
              1500),
    ]
    return out


def select(all_benches: list[Bench], only: list[str]) -> list[Bench]:
    """Benchmarks whose name is, or starts with, one of `only` (`federated` picks every edge count)."""
    if not only:
        return all_benches
    picked = [b for b in all_benches if any(b.name == o or b.name.startswith(f"{o}_") for o in only)]
    if not picked:
        names = ", ".join(b.name for b in all_benches)
        raise SystemExit(f"--only {','.join(only)}: no such benchmark (choose from {names})")
    return picked

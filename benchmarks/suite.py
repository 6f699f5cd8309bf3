"""Which benchmarks `python -m benchmarks` runs, at full size or --quick.

Every entry is a fresh subprocess (harness.run_bench) that writes its figures to `{json}`.
"""

from __future__ import annotations

from benchmarks.harness import Bench, python


def benches(quick: bool, features_16m: bool = False) -> list[Bench]:
    """The whole suite in run order; --quick shrinks every size so it finishes in a few minutes.

    `features_16m` adds the Spark job at 16M events to the scale sweep (past the 20-minute budget).
    """
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
    out.append(Bench("kinds", python("-m", "benchmarks.bench_kinds", "--rounds", rounds, "--json", "{json}"), 900))
    out += [
        Bench("replay", python("benchmarks/bench_replay.py", "--requests", "50000" if quick else "200000",
                               "--json", "{json}"), 300),
        Bench("e2e", python("-m", "benchmarks.bench_e2e", *e2e_sets, "--json", "{json}", "--logs", "{logs}"), 1500),
        Bench("scale", python("-m", "benchmarks.scale", *(["--quick"] if quick else []),
                              *(["--features-16m"] if features_16m and not quick else []),
                              "--json", "{json}", "--logs", "{logs}"),
              2700 if features_16m else 1500),
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

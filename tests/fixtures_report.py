"""Fixtures for the report, compare and sweep tests (registered in tests/conftest.py).

`make_results` builds a realistic results.json by hand, following DESIGN.md's contract
exactly: config, workload, federated.rounds, policies (overall + per_edge with hit_ratio,
byte_hit_ratio, requests, prefetch_bytes, prefetch_precision), static_efficiency, timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulation.config import ALL_POLICIES, build_config

EDGES = ("edge-00", "edge-01", "edge-02", "edge-03")
# Hand-picked hit ratios per policy and edge: federated beats the best reactive policy on
# edges 00, 01 and 03 and loses on edge-02; belady tops every reactive policy.
HIT = {
    "lru": (0.300, 0.280, 0.350, 0.310), "lfu": (0.320, 0.290, 0.360, 0.300),
    "arc": (0.340, 0.310, 0.380, 0.330), "s3fifo": (0.335, 0.305, 0.390, 0.325),
    "wtinylfu": (0.345, 0.300, 0.385, 0.320), "belady": (0.450, 0.420, 0.480, 0.440),
    "belady_prefetch": (0.610, 0.580, 0.640, 0.600),
    "popularity": (0.310, 0.300, 0.340, 0.300), "markov_sql": (0.360, 0.330, 0.370, 0.340),
    "itemcf": (0.355, 0.325, 0.365, 0.335),
    "local_only": (0.370, 0.320, 0.360, 0.350), "federated": (0.400, 0.360, 0.370, 0.390),
    "centralized": (0.420, 0.380, 0.400, 0.410),
}
REQUESTS = (5200, 4100, 6100, 4600)
PREDICTIVE = ("popularity", "markov_sql", "itemcf", "local_only", "federated", "centralized")


def _stats(policy: str, i: int, shift: float) -> dict[str, Any]:
    """One per-edge row as simulation/replay/policies.py writes it: DESIGN.md's keys plus raw counters."""
    hr = round(HIT[policy][i] + shift, 4)
    pre = policy in PREDICTIVE or policy == "belady_prefetch"
    prefetched = 400 + 10 * i if pre else 0
    return {"hit_ratio": hr, "byte_hit_ratio": round(hr * 0.93, 4), "requests": REQUESTS[i],
            "prefetch_bytes": (1_200_000_000 + 100_000_000 * i) if pre else 0,
            "prefetch_precision": round(0.4 + 0.05 * i, 4) if pre else 0.0,
            "origin_bytes": 9_000_000_000 - int(hr * 1e10),
            "latency_mean_ms": round(80 - 75 * hr, 3), "latency_p99_ms": 80.0,
            "hits": int(hr * REQUESTS[i]), "errors": 0, "prefetched": prefetched,
            "prefetch_used": int(prefetched * 0.45)}


def _policy(policy: str, shift: float) -> dict[str, Any]:
    per_edge = {e: _stats(policy, i, shift) for i, e in enumerate(EDGES)}
    total = sum(REQUESTS)
    summed = ("requests", "prefetch_bytes", "origin_bytes", "hits", "errors", "prefetched", "prefetch_used")
    overall = {k: sum(per_edge[e][k] for e in EDGES) for k in summed}
    for k in ("hit_ratio", "byte_hit_ratio", "latency_mean_ms"):
        overall[k] = round(sum(per_edge[e][k] * per_edge[e]["requests"] for e in EDGES) / total, 4)
    overall["latency_p99_ms"] = 80.0
    overall["prefetch_precision"] = 0.47 if policy in PREDICTIVE else 0.0
    extra = ({"calibration": {"ece": 0.004, "ece_raw": 0.05, "bins": [], "calibrator": {"kind": "isotonic", "edges": 4}}}
             if policy in PREDICTIVE else {})
    kind = "predictive" if policy in PREDICTIVE else "offline" if policy.startswith("belady") else "reactive"
    return {"kind": kind, "overall": overall, "per_edge": per_edge, "flags": {}, **extra}


def _static(hr: float, i: int) -> dict[str, Any]:
    return {"hit_ratio": hr, "byte_hit_ratio": round(hr * 0.9, 4), "requests": REQUESTS[i], "cached_items": 50}


def _timeline(shift: float) -> dict[str, Any]:
    """Cumulative hit ratio at 8 sampled hours: each policy climbs from half its final value."""
    days = [i / 4 for i in range(8)]
    return {"note": "cumulative hit ratio", "t": [f"2025-04-05T{h:02d}" for h in range(0, 24, 3)], "days": days,
            "policies": {p: [round((HIT[p][0] + shift) * (0.5 + i / 14), 4) for i in range(8)] for p in HIT}}


def make_results(shift: float = 0.0, name: str = "fixture") -> dict[str, Any]:
    """A complete results dict; `shift` moves every hit ratio (for compare tests)."""
    cfg = build_config({"run": {"name": name, "seed": 7},
                        "workload": {"edges": len(EDGES), "users": 400, "items": 900, "events": 20000},
                        "federated": {"rounds": 5}, "cache": {"capacity": 50}}).to_dict()
    rounds = [{"round": r, "train_loss": round(5.2 - 0.6 * r, 3), "eval_hit_at_k": round(0.12 + 0.05 * r, 3),
               "num_edges": 4 if r != 3 else 3, "failures": ["edge-02"] if r == 3 else []}
              for r in range(1, 6)]
    return {
        "config": cfg,
        "workload": {"events": 20000, "users": 400, "items": 900, "edges": 4, "train_events": 15000,
                     "test_events": 4800, "quarantined": {"bad_timestamp": 120, "missing_user": 60,
                                                          "negative_duration": 20}},
        "federated": {"strategy": "fedavg", "rounds": rounds,
                      "centralized": {"train_loss": 1.9, "eval_hit_at_k": 0.41},
                      "local_only": {"train_loss": 2.6, "eval_hit_at_k": 0.29}},
        "policies": {p: _policy(p, shift) for p in ALL_POLICIES},
        "static_efficiency": {
            "note": "top-C items cached at the start of the test window, never updated; "
                    "'oracle' ranks by test-period frequency (offline bound)",
            "popularity": {"overall": {"hit_ratio": 0.28, "requests": 20000},
                           "per_edge": {e: _static(0.27, i) for i, e in enumerate(EDGES)}},
            "oracle": {"overall": {"hit_ratio": 0.41, "requests": 20000},
                       "per_edge": {e: _static(0.40, i) for i, e in enumerate(EDGES)}}},
        "degraded": [{"policy": "federated", "edge": "edge-01", "first_request": 1200, "last_request": 1241,
                      "first_ts": "2025-04-05 10:00:00", "last_ts": "2025-04-05 10:05:00", "requests": 42}],
        "policies_skipped": {"federated_personalized": "no personalized models (federated.personalize_epochs = 0)"},
        "timeline": _timeline(shift),
        "timings": {"generate_s": 3.2, "features_s": 41.0, "train_s": 60.5, "replay_s": 22.1, "total_s": 127.9},
    }


def write_run(root: Path, results: dict[str, Any]) -> Path:
    """A run directory holding only results.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return root


@pytest.fixture
def report_results() -> dict[str, Any]:
    return make_results()


@pytest.fixture
def report_run(tmp_path: Path, report_results: dict[str, Any]) -> Path:
    return write_run(tmp_path / "run-a", report_results)

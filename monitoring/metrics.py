"""The Prometheus metrics every stage reports to (default registry, Prometheus naming).

Labels stay bounded: `edge` (one per edge site), `policy` (the cache policy names), `result`
(hit|miss), `device` (5 kinds), `stage` (pipeline stages), `model`
(federated|local_only|centralized|personalized). User ids and content ids are never labels.
This module is a leaf: it imports nothing of edgecache.

Stages record through the helper functions below rather than touching the metric objects, so
the names and label sets stay in one place. Which process records what (docs/monitoring.md):
the replay and the Flower ServerApp run in the process that runs the experiment (Flower's
simulation engine runs the ServerApp in a thread of the caller), so the default registry of
that process is enough. ClientApps run in Ray worker processes whose registries nobody
scrapes: edge-side training code must hand its numbers back to the server, not record here.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

RESULTS = ("hit", "miss")

REQUESTS = Counter("edgecache_requests_total", "Content requests served by an edge cache",
                   ["edge", "policy", "result"])
PREFETCHES = Counter("edgecache_prefetches_total", "Items prefetched into an edge cache",
                     ["edge", "policy"])
ORIGIN_BYTES = Counter("edgecache_origin_bytes_total",
                       "Bytes fetched from the origin (misses and prefetches)", ["edge", "policy"])
PREDICTION_SECONDS = Histogram(
    "edgecache_prediction_seconds", "Time to compute next-content predictions for one batch",
    ["edge"], buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
USER_ACTIVITY = Counter("edgecache_user_events_total", "Viewing events by edge and device",
                        ["edge", "device"])
REDIS_ERRORS = Counter("edgecache_redis_errors_total",
                       "Redis operations that failed (requests then go to the origin)", ["edge"])
FEDERATED_ROUND = Gauge("edgecache_federated_round", "Last completed federated round")
TRAIN_LOSS = Gauge("edgecache_train_loss", "Training loss after the last round", ["model"])
EVAL_HIT_RATIO = Gauge("edgecache_eval_hit_ratio", "Held-out hit@K after the last round", ["model"])
EDGE_FAILURES = Counter("edgecache_edge_failures_total", "Edges that failed in a federated round")
RUN_PROGRESS = Gauge("edgecache_run_progress_ratio", "Completed share of a pipeline stage (0..1)",
                     ["stage"])


def init_edge(edge: str, policies: Iterable[str], devices: Iterable[str] = ()) -> None:
    """Export zeros for an edge's known label values, so dashboards show 0 rather than no data."""
    REDIS_ERRORS.labels(edge=edge)
    PREDICTION_SECONDS.labels(edge=edge)
    for device in devices:
        USER_ACTIVITY.labels(edge=edge, device=device)
    for policy in policies:
        PREFETCHES.labels(edge=edge, policy=policy)
        ORIGIN_BYTES.labels(edge=edge, policy=policy)
        for result in RESULTS:
            REQUESTS.labels(edge=edge, policy=policy, result=result)


def record_requests(edge: str, policy: str, hits: int, misses: int) -> None:
    """Count a batch of requests one edge served under one policy."""
    REQUESTS.labels(edge=edge, policy=policy, result="hit").inc(hits)
    REQUESTS.labels(edge=edge, policy=policy, result="miss").inc(misses)


def record_prefetch(edge: str, policy: str, items: int, nbytes: float) -> None:
    """Count prefetched items; their bytes come from the origin, so they count as origin traffic."""
    PREFETCHES.labels(edge=edge, policy=policy).inc(items)
    ORIGIN_BYTES.labels(edge=edge, policy=policy).inc(nbytes)


def record_origin_bytes(edge: str, policy: str, nbytes: float) -> None:
    """Count bytes fetched from the origin on misses."""
    ORIGIN_BYTES.labels(edge=edge, policy=policy).inc(nbytes)


def observe_prediction(edge: str, seconds: float) -> None:
    """Record how long one batch of next-content predictions took (use a monotonic clock)."""
    PREDICTION_SECONDS.labels(edge=edge).observe(seconds)


def record_user_events(edge: str, device: str, count: int = 1) -> None:
    """Count viewing events by edge and device kind (never by user)."""
    USER_ACTIVITY.labels(edge=edge, device=device).inc(count)


def record_redis_error(edge: str, count: int = 1) -> None:
    """Count failed Redis operations on an edge (the requests then go to the origin)."""
    REDIS_ERRORS.labels(edge=edge).inc(count)


def record_round(server_round: int, loss: float | None, hit: float | None, model: str = "federated") -> None:
    """Record a finished round: its number (federated model only), train loss and held-out hit@K
    (either may be None when the round did not report it)."""
    if model == "federated":
        FEDERATED_ROUND.set(server_round)
    if loss is not None:
        TRAIN_LOSS.labels(model=model).set(loss)
    if hit is not None:
        EVAL_HIT_RATIO.labels(model=model).set(hit)


def record_edge_failures(count: int = 1) -> None:
    """Count edges that failed in a federated round (tolerated, never hidden)."""
    EDGE_FAILURES.inc(count)


def set_stage_progress(stage: str, ratio: float) -> None:
    """Set the completed share (0..1) of a pipeline stage."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"progress of stage {stage!r} must be within 0..1, got {ratio}")
    RUN_PROGRESS.labels(stage=stage).set(ratio)

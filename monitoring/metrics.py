"""The Prometheus metrics every stage reports to (default registry, Prometheus naming).

Labels stay bounded: `edge` (one per edge site), `result` (hit|miss), `device` (5 kinds),
`stage` (pipeline stages), `model` (federated|local_only|centralized|personalized). User ids
and content ids are never labels. This module is a leaf: it imports nothing of edgecache.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

"""How well each predictor foresees the test period: hit@K against each user's next request.

Causal like the replay: the prediction for request j uses the user's history up to and
including j; it counts as a hit when the same user's next request in the test stream is among
the K predictions. Requests are sampled with a fixed stride (deterministic) to bound the cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_nodes.predictor import Predictor
from simulation.replay.streams import EdgeStream

MAX_SAMPLES_PER_EDGE = 5000


def next_request_index(user: np.ndarray) -> np.ndarray:
    """For each request, the index of the same user's next request (-1 when none)."""
    order = np.lexsort((np.arange(user.size), user))
    nxt = np.full(user.size, -1, dtype=np.int64)
    same = user[order[1:]] == user[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def hit_at_k(stream: EdgeStream, predictor: Predictor, k: int,
             max_samples: int = MAX_SAMPLES_PER_EDGE) -> tuple[int, int]:
    """(hits, requests evaluated) of `predictor` on a strided sample of one edge's stream."""
    nxt = next_request_index(stream.user)
    candidates = np.flatnonzero(nxt >= 0)
    if candidates.size == 0:
        return 0, 0
    idx = candidates[:: max(1, -(-candidates.size // max_samples))]
    preds = predictor.predict(stream.hist[idx], stream.device_idx[idx], stream.hour[idx], k, users=stream.user[idx])
    hits = (preds == stream.item[nxt[idx]][:, None]).any(axis=1)
    return int(hits.sum()), int(idx.size)


def summarize_quality(counts: dict[str, dict[str, tuple[int, int]]], k: int) -> dict[str, Any]:
    """results.json `prediction_quality`: per predictor, overall and per edge hit@K."""
    out: dict[str, Any] = {"k": k, "note": "hit@K of each predictor against the user's next "
                           "request in the test period (strided sample, causal history)"}
    for policy, per_edge in counts.items():
        hits = sum(h for h, _ in per_edge.values())
        n = sum(m for _, m in per_edge.values())
        out[policy] = {"overall": {"hit_at_k": round(hits / n, 6) if n else None, "requests": n},
                       "per_edge": {e: {"hit_at_k": round(h / m, 6) if m else None, "requests": m}
                                    for e, (h, m) in sorted(per_edge.items())}}
    return out

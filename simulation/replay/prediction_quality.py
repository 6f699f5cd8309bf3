"""How well each predictor foresees the test period: hit@K and NDCG@K against each user's next request.

Causal like the replay: the prediction for request j uses the user's history up to and
including j; it counts as a hit when the same user's next request in the test stream is among
the K predictions (ranked over the full catalog), and scores 1 / log2(rank + 1) in NDCG (one
relevant item, so the ideal DCG is 1; rank 1 = the top prediction). Requests are sampled with a
fixed stride (deterministic) to bound the cost.
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


def sampled_rows(stream: EdgeStream, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, their user's next row): a fixed-stride sample of the requests that have a next one."""
    nxt = next_request_index(stream.user)
    candidates = np.flatnonzero(nxt >= 0)
    idx = candidates[:: max(1, -(-candidates.size // max_samples))] if candidates.size else candidates
    return idx, nxt[idx]


def ranking_quality(stream: EdgeStream, predictor: Predictor, k: int,
                    max_samples: int = MAX_SAMPLES_PER_EDGE) -> tuple[int, float, int]:
    """(hits, summed NDCG, requests evaluated) of `predictor` on a strided sample of one edge's stream."""
    idx, nxt = sampled_rows(stream, max_samples)
    if idx.size == 0:
        return 0, 0.0, 0
    preds = predictor.predict(stream.hist[idx], stream.device_idx[idx], stream.hour[idx], k, users=stream.user[idx],
                              at=None if stream.at is None else stream.at[idx], ts=stream.ts[idx])
    return score_ranking(preds, stream.item[nxt])


def score_ranking(preds: np.ndarray, target: np.ndarray) -> tuple[int, float, int]:
    """(hits, summed NDCG, rows) of ranked predictions (n, K) against each row's next request."""
    match = preds == target[:, None]
    hit = match.any(axis=1)
    gain = 1.0 / np.log2(np.argmax(match, axis=1) + 2.0)  # first matching position, 0-based
    return int(hit.sum()), float(gain[hit].sum()), int(preds.shape[0])


def _rates(hits: int, dcg: float, n: int) -> dict[str, Any]:
    return {"hit_at_k": round(hits / n, 6) if n else None, "ndcg_at_k": round(dcg / n, 6) if n else None,
            "requests": n}


def summarize_quality(counts: dict[str, dict[str, tuple[int, float, int]]], k: int) -> dict[str, Any]:
    """results.json `prediction_quality`: per predictor, overall and per edge hit@K and NDCG@K."""
    out: dict[str, Any] = {"k": k, "note": "hit@K and NDCG@K of each predictor against the user's next "
                           "request in the test period (full catalog, strided sample, causal history)"}
    for policy, per_edge in counts.items():
        total = [sum(c[i] for c in per_edge.values()) for i in range(3)]
        out[policy] = {"overall": _rates(int(total[0]), float(total[1]), int(total[2])),
                       "per_edge": {e: _rates(*c) for e, c in sorted(per_edge.items())}}
    return out

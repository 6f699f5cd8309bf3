"""hit@K against each user's next test request, on hand-computed tiny streams."""

from __future__ import annotations

import numpy as np

from edge_nodes.learning.predictors import PopularityPredictor
from simulation.replay.prediction_quality import hit_at_k, next_request_index, summarize_quality
from simulation.replay.streams import EdgeStream


def test_next_request_index_hand_computed() -> None:
    user = np.array(["a", "b", "a", "c", "b", "a"])
    assert next_request_index(user).tolist() == [2, 4, 5, -1, -1, -1]


def test_hit_at_k_counts_the_users_next_request() -> None:
    # users a, b; popularity ranks item 3 first, then 1: top-1 = [3]
    stream = EdgeStream("edge-00", item=np.array([1, 2, 3, 1, 3]), user=np.array(["a", "b", "a", "b", "b"]),
                        device_idx=np.zeros(5, int), hour=np.zeros(5, int), ts=np.arange(5),
                        hist=np.array([[-1, 1], [-1, 2], [1, 3], [2, 1], [1, 3]]))
    pop = PopularityPredictor(np.array([0.0, 5, 1, 9, 0]))
    # evaluated: request 0 (next a: item 3), 1 (next b: item 1), 3 (next b: item 3)
    hits, n = hit_at_k(stream, pop, 1)
    assert n == 3
    top1 = pop.predict(stream.hist[[0, 1, 3]], np.zeros(3, int), np.zeros(3, int), 1)[:, 0]
    assert hits == int((top1 == np.array([3, 1, 3])).sum())
    out = summarize_quality({"popularity": {"edge-00": (hits, n)}}, 1)
    assert out["popularity"]["overall"] == {"hit_at_k": round(hits / n, 6), "requests": 3}

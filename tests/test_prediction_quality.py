"""hit@K and NDCG@K against each user's next test request, on hand-computed tiny streams."""

from __future__ import annotations

import numpy as np

from edge_nodes.learning.predictors import PopularityPredictor
from simulation.replay.prediction_quality import next_request_index, ranking_quality, summarize_quality
from simulation.replay.streams import EdgeStream


def test_next_request_index_hand_computed() -> None:
    user = np.array(["a", "b", "a", "c", "b", "a"])
    assert next_request_index(user).tolist() == [2, 4, 5, -1, -1, -1]


def _stream() -> EdgeStream:
    return EdgeStream("edge-00", item=np.array([1, 2, 3, 1, 3]), user=np.array(["a", "b", "a", "b", "b"]),
                      device_idx=np.zeros(5, int), hour=np.zeros(5, int), ts=np.arange(5),
                      hist=np.array([[-1, 1], [-1, 2], [1, 3], [2, 1], [1, 3]]))


def test_hit_and_ndcg_count_the_users_next_request() -> None:
    # popularity ranks item 3 first, then 1; evaluated: request 0 (a's next: 3), 1 (b's next: 1), 3 (b's next: 3)
    pop = PopularityPredictor(np.array([0.0, 5, 1, 9, 0]))
    assert ranking_quality(_stream(), pop, 1) == (2, 2.0, 3)  # top-1 = [3]: requests 0 and 3 hit at rank 1
    hits, dcg, n = ranking_quality(_stream(), pop, 2)  # top-2 = [3, 1]: request 1 hits at rank 2
    assert (hits, n) == (3, 3) and abs(dcg - (1 + 1 / np.log2(3) + 1)) < 1e-12
    out = summarize_quality({"popularity": {"edge-00": (hits, dcg, n)}}, 2)
    assert out["popularity"]["overall"] == {"hit_at_k": 1.0, "ndcg_at_k": 0.876977, "requests": 3}
    assert out["popularity"]["per_edge"]["edge-00"] == out["popularity"]["overall"]


def test_a_user_without_a_next_request_is_not_evaluated() -> None:
    stream = EdgeStream("edge-00", item=np.array([1, 2]), user=np.array(["a", "b"]), device_idx=np.zeros(2, int),
                        hour=np.zeros(2, int), ts=np.arange(2), hist=np.array([[-1, 1], [-1, 2]]))
    assert ranking_quality(stream, PopularityPredictor(np.array([0.0, 5, 1])), 2) == (0, 0.0, 0)
    assert summarize_quality({"popularity": {"edge-00": (0, 0.0, 0)}}, 2)["popularity"]["overall"] == {
        "hit_at_k": None, "ndcg_at_k": None, "requests": 0}

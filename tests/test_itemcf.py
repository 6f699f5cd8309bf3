"""itemcf on hand-made tables: the summed CSR file, the edge's reply contract, scores, the seen rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from aggregator.analytics import coo_problems
from aggregator.rounds import contract_violations
from edge_nodes.errors import ModelFileError
from edge_nodes.learning.cooc_app import cooc_content
from edge_nodes.learning.cooc_predictor import REPEAT_THRESHOLD, CoocPredictor
from edge_nodes.learning.cooc_table import CoocTable
from edge_nodes.learning.history import UserHistory

N = 6
# edge A: 0>1 x2, 0>2 x1, 1>3 x4; edge B: 0>1 x1, 1>5 x1  ->  0>1 3, 0>2 1, 1>3 4, 1>5 1
PARTS = [(np.array([0, 0, 1]), np.array([1, 2, 3]), np.array([2.0, 1.0, 4.0])),
         (np.array([0, 1]), np.array([1, 5]), np.array([1.0, 1.0]))]
POP = np.array([5.0, 0, 0, 0, 1.0, 0])  # share 5/6 for item 0, 1/6 for item 4


def table() -> CoocTable:
    return CoocTable.from_coo(PARTS, N, window=2, decay=0.5)


def test_from_coo_sums_the_edges_into_csr() -> None:
    t = table()
    assert t.indptr.tolist() == [0, 2, 4, 4, 4, 4, 4] and t.indices.tolist() == [1, 2, 3, 5]
    assert t.counts.tolist() == [3.0, 1.0, 4.0, 1.0] and t.edges == 2
    assert t.indptr.dtype == np.int64 and t.indices.dtype == np.int32 and t.counts.dtype == np.float32


def test_the_file_round_trips_and_refuses_another_catalog(tmp_path: Path) -> None:
    path = tmp_path / "models" / "itemcf.npz"
    table().save(path)
    back = CoocTable.load(path, N)
    np.testing.assert_array_equal(back.to_dense(), table().to_dense())
    assert (back.window, back.decay, back.n_items) == (2, 0.5, N)
    with pytest.raises(ModelFileError, match="catalog has 7"):
        CoocTable.load(path, 7)
    np.savez(tmp_path / "other.npz", indptr=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an itemcf table"):
        CoocTable.load(tmp_path / "other.npz")
    with pytest.raises(ModelFileError, match="run `edgecache train`"):
        CoocTable.load(tmp_path / "missing.npz")


def test_the_edge_reply_is_arrays_and_scalars_only(tmp_path: Path) -> None:
    part = tmp_path / "cooc" / "edge_id=edge-00"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"prev_idx": pa.array([0, 1], pa.int32()), "next_idx": pa.array([1, 3], pa.int32()),
                             "count": [2.0, 0.5]}), part / "p.parquet")
    content = cooc_content(part, N, edge_index=0)
    assert contract_violations(content, with_arrays=True) == [] and coo_problems(content, N) == []
    assert dict(content.metric_records["metrics"]) == {"pairs": 2, "total": 2.5, "edge-index": 0}
    assert coo_problems(content, 1) == ["item indices outside 0..0"]
    leaky = RecordDict({"arrays": ArrayRecord({"rows": Array(np.zeros(1, np.int64))}),
                        "config": ConfigRecord({"user": "U1"}), "metrics": MetricRecord({"edge-index": 0})})
    assert contract_violations(leaky, with_arrays=True) == ["config record 'config'"]
    assert coo_problems(leaky, N) == ["arrays must be exactly ['rows', 'cols', 'counts'], got ['rows']"]


def test_scores_are_decay_weighted_sums_over_the_window() -> None:
    p = CoocPredictor(table(), POP)
    # history [0, 1]: item 1 (lag 1, weight 1): 3 -> 4, 5 -> 1; item 0 (lag 2, weight 0.5): 1 -> 1.5, 2 -> 0.5
    np.testing.assert_allclose(p.scores(np.array([[0, 1], [-1, -1]])), [[0, 1.5, 0.5, 4, 0, 1], [0] * N])
    # a longer history than the table's window: only its last 2 items count
    np.testing.assert_allclose(p.scores(np.array([[3, 0, 1]])), [[0, 1.5, 0.5, 4, 0, 1]])


def test_predictions_rank_scored_items_then_popularity_and_never_the_current_item() -> None:
    ids, probs = CoocPredictor(table(), POP).predict_scored(np.array([[0, 1], [-1, -1]]), None, None, 5)
    assert ids.tolist() == [[3, 5, 2, 0, 4], [0, 4, -1, -1, -1]]  # nothing to say about never-viewed items
    # normalized scores with one pseudo-count of popularity: (s + share) / (5.5 + 1)
    np.testing.assert_allclose(probs[0], np.array([4, 1, 0.5, 5 / 6, 1 / 6]) / 6.5)
    np.testing.assert_allclose(probs[1], [5 / 6, 1 / 6, 0, 0, 0])


def _history(tmp_path: Path, items: dict[str, list[int]]) -> Path:
    path = tmp_path / "history" / "edge_id=edge-00"
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user_id": list(items), "items": list(items.values())}), path / "p.parquet")
    return path


def _predictor(tmp_path: Path, items: dict[str, list[int]]) -> CoocPredictor:
    table().save(tmp_path / "itemcf.npz")
    pop = tmp_path / "popularity"
    pop.mkdir(exist_ok=True)
    pq.write_table(pa.table({"item_idx": pa.array(range(N), pa.int32()), "count": POP.astype(np.int64)}),
                   pop / "p.parquet")
    return CoocPredictor.from_files(tmp_path / "itemcf.npz", pop, _history(tmp_path, items), N)


def test_seen_items_are_left_out_where_the_edge_does_not_return(tmp_path: Path) -> None:
    p = _predictor(tmp_path, {"U1": [3, 2, 4], "U2": [0]})  # no repeat: share 0
    assert p.exclude_seen and p.history is not None and p.history.repeat_share() == 0.0
    hist = np.array([[0, 1], [0, 1]])
    assert p.predict(hist, None, None, 5).tolist() == [[3, 5, 2, 4, -1]] * 2  # no users: the window only
    assert p.predict(hist, None, None, 5, users=np.array(["U1", "U9"])).tolist() == [
        [5, -1, -1, -1, -1], [3, 5, 2, 4, -1]]  # U1 saw 3, 2, 4 before the cut; U9 is unknown


def test_seen_items_stay_where_the_edge_re_consumes(tmp_path: Path) -> None:
    p = _predictor(tmp_path / "r", {"U1": [3, 3, 2, 3]})  # 2 of 4 events re-consume: 0.5
    assert p.history is not None and p.history.repeat_share() == 0.5 > REPEAT_THRESHOLD
    assert not p.exclude_seen
    assert p.predict(np.array([[0, 1]]), None, None, 3, users=np.array(["U1"])).tolist() == [[3, 5, 2]]


def test_test_requests_before_the_row_are_seen_and_later_ones_not(tmp_path: Path) -> None:
    p = _predictor(tmp_path, {"U1": [3], "U2": [0]})
    assert p.history is not None
    # U1's test requests 2 then 4 (positions 1, 2): at 2 (after its first) only 3 and 2 are seen
    pos = p.history.extend(p.history.codes(np.array(["U1", "U1"])), np.array([2, 4]))
    assert pos.tolist() == [1, 2]
    hist = np.array([[0, 1]])
    users = np.array(["U1"])
    assert p.predict(hist, None, None, 5, users=users, at=pos[:1] + 1).tolist() == [[5, 4, -1, -1, -1]]
    assert p.predict(hist, None, None, 5, users=users, at=pos[1:] + 1).tolist() == [[5, -1, -1, -1, -1]]
    assert p.predict(hist, None, None, 5, users=users).tolist() == [[5, -1, -1, -1, -1]]  # None: all it knows
    assert p.history.repeat_share() == 0.0  # the rule is the training period's: extend never moves it


def test_seen_pairs_respect_each_rows_position(tmp_path: Path) -> None:
    h = UserHistory.from_table(_history(tmp_path, {"U1": [3, 2, 3, 4], "U2": [1]}), N)
    rows, items = h.seen_pairs(h.codes(np.array(["U1", "U2", "U1", "U7"])), np.array([2, 1, 4, 5]))
    assert sorted(zip(rows.tolist(), items.tolist(), strict=True)) == [(0, 2), (0, 3), (1, 1), (2, 2), (2, 3), (2, 4)]


def test_no_counts_are_asked_for_under_dp(tmp_path: Path) -> None:
    from aggregator.analytics import ITEMCF_FILE, run_cooc_round
    from aggregator.settings import ServerSettings

    stale = tmp_path / ITEMCF_FILE
    table().save(stale)

    class NoGrid:  # any message sent would fail the test
        def get_node_ids(self) -> list[int]:
            raise AssertionError("queried edges under DP")

    s = ServerSettings(model_dir=str(tmp_path), n_items=N, history_len=2, num_edges=2, dp_noise=1.0, dp_clip=1.0)
    assert run_cooc_round(NoGrid(), s)["status"] == "skipped"  # type: ignore[arg-type]
    assert not stale.exists()


def test_aged_counts_carry_their_half_life_and_the_cut_into_the_table(tmp_path: Path) -> None:
    """features.cooc_half_life_days reaches the server with the cut (its reference), and the summed
    table records both; plain counts record neither."""
    from aggregator.analytics import sum_cooc
    from simulation.config import load_config
    from simulation.rundir import RunDir
    from simulation.span import cut_seconds, time_cut
    from simulation.training.plan import server_settings

    run, smoke = RunDir(tmp_path), Path(__file__).resolve().parent.parent / "experiments" / "smoke.toml"
    cfg = load_config(smoke, ["features.cooc_half_life_days=10"])
    s = server_settings(cfg, run, N, 2)
    assert s.cooc_half_life_days == 10.0 and s.cooc_ref_s == cut_seconds(time_cut(cfg, run)) > 0
    summed = sum_cooc([(0, PARTS[0]), (1, PARTS[1])], s)
    assert (summed.half_life_days, summed.ref_s) == (10.0, s.cooc_ref_s)
    plain = server_settings(load_config(smoke), run, N, 2)
    assert (plain.cooc_half_life_days, plain.cooc_ref_s) == (0.0, 0)
    assert sum_cooc([(0, PARTS[0])], plain).half_life_days == 0.0


@pytest.mark.parametrize("k", [3, 40])  # 40: more than the catalog, padded with -1
def test_predictions_are_the_where_key_ranking_with_ties_to_the_smaller_item(k: int) -> None:
    """The in-place ranking key (max((s + 1) * (s > 0), share)) ranks as the plain definition:
    where(s > 0, s + 1, share), the excluded at -inf, a stable sort (ties to the smaller item),
    the dead (key <= 0) as -1; integer counts and popularity make ties, zeros make dead items."""
    rng = np.random.default_rng(7)
    n_items, rows = 30, 300  # more rows than a chunk: the chunks share their key scratch
    t = CoocTable.from_coo([(rng.integers(0, n_items, 60), rng.integers(0, n_items, 60), np.ones(60))],
                           n_items, window=3, decay=0.5)
    pop = rng.integers(0, 3, n_items).astype(np.float64)
    hist = rng.integers(-1, n_items, (rows, 4))
    p = CoocPredictor(t, pop)
    ids, probs = p.predict_scored(hist, None, None, k)
    s = p.scores(hist)
    excluded_rows, excluded_items = p.excluded(hist, None)
    s[excluded_rows, excluded_items] = 0.0
    key = np.where(s > 0, s + 1.0, p.share)
    key[excluded_rows, excluded_items] = -np.inf
    want = np.argsort(-key, axis=1, kind="stable")[:, :k]
    dead = np.take_along_axis(key, want, axis=1) <= 0
    want_probs = (np.take_along_axis(s, want, axis=1) + p.share[want]) / (s.sum(axis=1, keepdims=True) + 1.0)
    pad = ((0, 0), (0, k - want.shape[1]))
    assert np.array_equal(ids, np.pad(np.where(dead, -1, want), pad, constant_values=-1))
    assert np.array_equal(probs, np.pad(np.where(dead, 0.0, want_probs), pad))

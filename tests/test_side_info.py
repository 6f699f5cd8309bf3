"""Side information (edge_nodes/learning/side.py): the whole-history "seen" signal and the
co-occurrence input, their leave-own-out rule, and a model that learns how much they count."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_nodes.learning.cooc_app import cooc_partition, load_cooc
from edge_nodes.learning.cooc_table import CoocTable, window_pairs
from edge_nodes.learning.history import UserHistory
from edge_nodes.learning.model import ModelSpec, init_params, load_params, save_params, top_k
from edge_nodes.learning.side import SideInfo, SparseSide, at_columns, features_at, own_share
from edge_nodes.learning.task import TrainSettings, evaluate, load_examples, recency_weights, train
from tests.fixtures_federated import SyntheticRun, cooc_table


def _table_of(run: SyntheticRun, edge: str, window: int) -> CoocTable:
    coo = load_cooc(cooc_partition(run.examples, edge), run.n_items)
    return CoocTable.from_coo([coo], run.n_items, window, 0.6)


def test_own_share_is_exactly_what_the_row_added_to_its_label(synthetic_run: SyntheticRun) -> None:
    """A table counted from one row holds only that row: its label's score minus its share is 0."""
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    hist = np.array([[3, 7, 3], [-1, -1, 5], [1, 2, 4]])
    label = np.array([9, 8, 6])
    for i in range(len(label)):
        t = pa.table({"hist": pa.array([hist[i].tolist()], pa.list_(pa.int32())), "label": [int(label[i])]})
        coo = cooc_table(t, 10)
        table = CoocTable.from_coo([(coo["prev_idx"].to_numpy(), coo["next_idx"].to_numpy(), coo["count"].to_numpy())],
                                   10, 3, 0.6)
        score = table.window_scores(hist[i:i + 1])[0, label[i]]
        assert score > 0
        assert np.isclose(own_share(hist[i:i + 1], table)[0], score)
    assert len(ex) > 0
    # with every edge row counted, leaving each row's own event out never goes below zero
    table = _table_of(synthetic_run, "edge-00", synthetic_run.history_len)
    side = SideInfo(None, table)
    _, with_own = SideInfo(None, table).dense(ex.hist, None, None)
    _, own_out = side.dense(ex.hist, ex.user, ex.pos, ex.label)
    rows = np.arange(len(ex))
    assert np.all(own_out[rows, ex.label] >= 0)
    assert np.all(own_out[rows, ex.label] <= with_own[rows, ex.label])


def test_own_share_in_an_aged_table_is_the_rows_count_at_its_age() -> None:
    """Counts aged to the cut (features.cooc_half_life_days): a row two half-lives before the cut
    added a quarter of its plain share, and that is what leaving it out takes away."""
    hist, label = np.array([[3, 7, 3]]), np.array([9])
    ref_s, ts_s = 10 * 86400, np.array([6 * 86400])
    plain = CoocTable.from_coo([window_pairs(hist, label, 3, 0.6, False)], 10, 3, 0.6)
    aged = CoocTable.from_coo([window_pairs(hist, label, 3, 0.6, False, np.array([0.25]))], 10, 3, 0.6,
                              half_life_days=2.0, ref_s=ref_s)
    assert np.isclose(own_share(hist, aged, ts_s)[0], 0.25 * own_share(hist, plain)[0])
    assert np.isclose(own_share(hist, aged, ts_s)[0], aged.window_scores(hist)[0, 9])
    _, cooc = SideInfo(None, aged).dense(hist, None, None, label, ts_s=ts_s)
    assert cooc[0, 9] == 0.0


def test_seen_covers_the_whole_history_before_the_row_and_the_window(synthetic_run: SyntheticRun, tmp_path) -> None:
    part = tmp_path / "history"
    part.mkdir()
    pq.write_table(pa.table({"user_id": ["u1", "u2"], "items": pa.array([[4, 1, 4, 2, 8], [0]], pa.list_(pa.int32()))}),
                   part / "p.parquet")
    side = SideInfo(UserHistory.from_table(part, 10), None)
    # u1's row at position 3 (label 2) has seen 4 and 1; the window adds 6; the future (2, 8) is not seen
    seen, cooc = side.dense(np.array([[-1, 6]]), np.array(["u1"]), np.array([3]), np.array([2]))
    assert np.flatnonzero(seen[0]).tolist() == [1, 4, 6]
    assert not cooc.any()
    # a live request (pos None) sees the user's whole known history; an unknown user only its window
    seen, _ = side.dense(np.array([[-1, 6], [-1, 3]]), np.array(["u1", "nobody"]), None)
    assert np.flatnonzero(seen[0]).tolist() == [1, 2, 4, 6, 8]
    assert np.flatnonzero(seen[1]).tolist() == [3]


def test_merged_histories_keep_each_edge_apart(tmp_path) -> None:
    parts = []
    for edge, items in (("a", [[1, 2]]), ("b", [[3]])):
        d = tmp_path / edge
        d.mkdir()
        pq.write_table(pa.table({"user_id": ["u"], "items": pa.array(items, pa.list_(pa.int32()))}), d / "p.parquet")
        parts.append(UserHistory.from_table(d, 5, prefix=f"{edge}/"))
    merged = UserHistory.merge(parts)
    rows, items = merged.seen_pairs(merged.codes(np.array(["a/u", "b/u"])), np.array([9, 9]))
    assert sorted(zip(rows.tolist(), items.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 3)]


def _settings(**kw: float) -> TrainSettings:
    base = {"epochs": 4, "lr": 0.05, "batch_size": 64, "l2": 1e-6, "proximal_mu": 0.0, "negatives": 16,
            "recency_half_life_days": 0.0, "min_steps": 0}
    return TrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_a_trace_without_returns_learns_to_skip_what_was_seen(synthetic_run: SyntheticRun) -> None:
    """Keep only first watches (nobody returns): the learned seen weight goes negative, and the
    model with side information puts the true item first more often than the same model without."""
    ex = load_examples(synthetic_run.examples, "edge-01", synthetic_run.history_len)
    history = UserHistory.from_table(synthetic_run.root / "features" / "history" / "edge_id=edge-01",
                                     synthetic_run.n_items)
    first = ~history.seen_before(history.codes(ex.user), ex.pos, ex.label)
    ex = ex.take(np.flatnonzero(first))
    side = SideInfo(history, _table_of(synthetic_run, "edge-01", synthetic_run.history_len))
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)
    start = init_params(spec, np.random.default_rng(0))
    with_side, _ = train(start, spec, ex, _settings(), np.random.default_rng(1), side)
    without, _ = train(start, spec, ex, _settings(), np.random.default_rng(1))
    assert with_side[7][0] < -0.5  # "already watched" learned as a reason not to predict it
    assert not np.any(without[7])  # no side information: the weights never move
    q_side = evaluate(with_side, spec, ex, 1, side=side)["hit_at_k"]  # the top prediction (0.49 vs 0.40 here)
    q_plain = evaluate(without, spec, ex, 1)["hit_at_k"]
    assert q_side > q_plain + 0.03
    again, _ = train(start, spec, ex, _settings(), np.random.default_rng(1), side)
    assert all(np.array_equal(a, b) for a, b in zip(with_side, again, strict=True))  # same seed, same params


def test_full_softmax_takes_the_side_features_too(synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    history = UserHistory.from_table(synthetic_run.root / "features" / "history" / "edge_id=edge-00",
                                     synthetic_run.n_items)
    side = SideInfo(history, _table_of(synthetic_run, "edge-00", synthetic_run.history_len))
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)
    params, loss = train(init_params(spec, np.random.default_rng(0)), spec, ex, _settings(negatives=0, epochs=2),
                         np.random.default_rng(0), side)
    assert np.isfinite(loss) and np.any(params[7])


def test_old_model_files_load_with_zero_side_weights(tmp_path) -> None:
    spec = ModelSpec(12, 4, 3)
    params = init_params(spec, np.random.default_rng(0))
    path = save_params(tmp_path / "m.npz", params, spec)
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "side_w"}
    np.savez(tmp_path / "old.npz", **old)
    loaded, _ = load_params(tmp_path / "old.npz")
    assert not np.any(loaded[7])
    assert top_k(loaded, spec, np.array([[0, 1, 2]]), np.array([0]), np.array([3]), 2).shape == (1, 2)


def test_recency_weights_halve_per_half_life_and_average_one() -> None:
    day = 86_400
    w = recency_weights(np.array([0, 10 * day, 20 * day]), 10.0)
    assert w is not None and np.allclose(w / w[-1], [0.25, 0.5, 1.0]) and np.isclose(w.mean(), 1.0)
    assert recency_weights(np.array([0, day]), 0.0) is None


def test_column_features_equal_the_dense_ones(synthetic_run: SyntheticRun) -> None:
    """Training gathers only the candidates' columns (at_columns); it must equal the dense path,
    own event left out at the label wherever the label is among the candidates too."""
    ex = load_examples(synthetic_run.examples, "edge-02", synthetic_run.history_len)
    history = UserHistory.from_table(synthetic_run.root / "features" / "history" / "edge_id=edge-02",
                                     synthetic_run.n_items)
    side = SideInfo(history, _table_of(synthetic_run, "edge-02", synthetic_run.history_len))
    idx = np.arange(0, len(ex), 3)
    seen, cooc = side.dense(ex.hist[idx], ex.user[idx], ex.pos[idx], ex.label[idx])
    for cols in (np.arange(synthetic_run.n_items), np.array([5, 1, 0, 0, 0]), np.unique(ex.label[idx])[:7]):
        true, cand = at_columns(side, ex.hist[idx], ex.user[idx], ex.pos[idx], ex.label[idx], cols,
                                synthetic_run.n_items)
        np.testing.assert_allclose(true, features_at(seen, cooc, ex.label[idx][:, None])[:, 0], rtol=1e-5, atol=1e-6)
        first = np.unique(cols, return_index=True)[1]  # repeated columns: the first holds the item
        np.testing.assert_allclose(cand[:, first], features_at(seen, cooc, cols[None, first]), rtol=1e-5, atol=1e-6)
        assert not cand[:, np.setdiff1d(np.arange(cols.size), first)].any()  # and the repeats nothing


def test_sparse_side_scores_exactly_as_the_dense_features(synthetic_run: SyntheticRun) -> None:
    """Inference adds the side terms where they are nonzero (SparseSide): the same float32 logits as
    the dense (n, n_items) features, for rows with and without a history and an unknown user."""
    from edge_nodes.learning.side import add_side, add_side_sparse

    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    table = _table_of(synthetic_run, "edge-00", 3)
    history = UserHistory.from_table(synthetic_run.root / "features" / "history" / "edge_id=edge-00",
                                     synthetic_run.n_items)
    hist = np.vstack([ex.hist[:40], np.full((1, ex.hist.shape[1]), -1)])
    users = np.append(ex.user[:40], "nobody")
    pos = np.append(ex.pos[:40], 0)
    side = SideInfo(history, table)
    np.testing.assert_array_equal(table.window_scores_sparse(hist).toarray(), table.window_scores(hist))
    w = np.array([-1.5, 0.7, 0.3], dtype=np.float32)
    rng = np.random.default_rng(0)
    for at in (pos, None):
        z_dense = rng.normal(size=(hist.shape[0], synthetic_run.n_items)).astype(np.float32)
        z_sparse, before = z_dense.copy(), z_dense.copy()
        add_side(z_dense, *side.dense(hist, users, at, n_items=synthetic_run.n_items), w)
        add_side_sparse(z_sparse, side.sparse(hist, users, at), w)
        np.testing.assert_array_equal(z_sparse, z_dense)
        assert (z_sparse != before).mean() > 0.05  # both signals were there to add
    shared = side.sparse(hist, users, pos)  # the lockstep's models: one batch's features, own weights
    for w_model in (w, np.array([0.4, -0.2, 1.1], dtype=np.float32), w):
        z_dense = rng.normal(size=(hist.shape[0], synthetic_run.n_items)).astype(np.float32)
        z_sparse = z_dense.copy()
        add_side(z_dense, *side.dense(hist, users, pos, n_items=synthetic_run.n_items), w_model)
        add_side_sparse(z_sparse, shared, w_model)
        np.testing.assert_array_equal(z_sparse, z_dense)
    wider = np.zeros((hist.shape[0], synthetic_run.n_items + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="co-occurrence features over"):  # flat indices would shift rows
        add_side_sparse(wider, side.sparse(hist, users, pos), w)


def test_blocked_scoring_equals_one_block(synthetic_run: SyntheticRun, monkeypatch) -> None:
    """top_k and top_k_with_probs score rows in blocks (model.row_blocks, logits kept in cache):
    the same ids and probabilities as all rows in one block, with sparse and dense side features."""
    from edge_nodes.learning import model

    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    history = UserHistory.from_table(synthetic_run.root / "features" / "history" / "edge_id=edge-00",
                                     synthetic_run.n_items)
    side = SideInfo(history, _table_of(synthetic_run, "edge-00", 3))
    n = min(301, ex.hist.shape[0])
    hist, users, dev, hour = ex.hist[:n], ex.user[:n], ex.device[:n], ex.hour[:n]
    spec = ModelSpec(n_items=synthetic_run.n_items, dim=8, history_len=synthetic_run.history_len)
    params = init_params(spec, np.random.default_rng(3))
    params[spec.param_names.index("side_w")][:] = [-1.5, 0.7, 0.3]
    for feats in (side.sparse(hist, users, ex.pos[:n]), side.dense(hist, users, ex.pos[:n])):
        monkeypatch.setattr(model, "BLOCK_LOGITS", 1 << 40)
        whole = model.top_k_with_probs(params, spec, hist, dev, hour, 4, feats)
        ids_whole = model.top_k(params, spec, hist, dev, hour, 4, feats)
        monkeypatch.setattr(model, "BLOCK_LOGITS", 64 * spec.n_items)  # blocks of at most 64 rows
        bounds = model.row_blocks(n, spec.n_items)
        assert len(bounds) == -(-n // 64) > 2 and bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:], strict=False))
        blocked = model.top_k_with_probs(params, spec, hist, dev, hour, 4, feats)
        if isinstance(feats, SparseSide):  # the same bounds give the same blocks (derived terms kept)
            assert all(a is b for a, b in zip(feats.blocks(bounds), feats.blocks(bounds), strict=True))
        np.testing.assert_array_equal(blocked[0], whole[0])
        np.testing.assert_array_equal(blocked[1], whole[1])
        np.testing.assert_array_equal(model.top_k(params, spec, hist, dev, hour, 4, feats), ids_whole)

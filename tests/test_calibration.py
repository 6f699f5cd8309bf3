"""Calibration: PAV and ECE by hand, the isotonic fit repairs an overconfident predictor."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from edge_nodes.learning.cooc_predictor import CoocPredictor
from edge_nodes.learning.cooc_table import CoocTable
from edge_nodes.learning.model import ModelSpec, init_params, top_k, top_k_with_probs
from edge_nodes.learning.predictors import (
    MarkovPredictor,
    ModelPredictor,
    PopularityPredictor,
    TransitionCounts,
)
from edge_nodes.learning.side import SideInfo
from edge_nodes.learning.task import Examples, load_examples, split_by_time
from simulation.replay.calibration import (
    CalibratedPredictor,
    Isotonic,
    Reliability,
    fit_isotonic,
    held_out_view,
    pav,
    summarize_calibration,
)
from simulation.replay.calibration import EdgeCalibration as EC
from tests.fixtures_federated import SyntheticRun, cooc_table


def test_pav_pools_adjacent_violators() -> None:
    # 0.2, 0.6, 0.4 (weights 1, 1, 3): 0.6 and 0.4 pool to (0.6 + 1.2) / 4 = 0.45
    np.testing.assert_allclose(pav(np.array([0.2, 0.6, 0.4]), np.array([1.0, 1.0, 3.0])), [0.2, 0.45, 0.45])
    np.testing.assert_allclose(pav(np.array([0.1, 0.2]), np.ones(2)), [0.1, 0.2])


def test_reliability_bins_and_ece_by_hand() -> None:
    # bin (0.2, 0.3]: p 0.25 twice, one came true (observed 0.5, gap 0.25);
    # bin (0.7, 1.0]: p 0.8 twice, both true (gap 0.2); p = 0 (no prediction) is ignored
    rel = Reliability().add(np.array([0.25, 0.25, 0.8, 0.8, 0.0]), np.array([True, False, True, True, True]))
    assert rel.ece() == round((2 * 0.25 + 2 * 0.2) / 4, 6)
    assert [(r["lo"], r["n"], r["predicted"], r["observed"]) for r in rel.rows()] == [(0.2, 2, 0.25, 0.5),
                                                                                       (0.7, 2, 0.8, 1.0)]
    assert Reliability().ece() is None


def test_isotonic_fit_repairs_an_overconfident_predictor() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.6, size=20000)
    hit = rng.random(p.size) < p / 3  # says p, is right p/3 of the time
    cal = fit_isotonic(p, hit)
    assert cal is not None
    before = Reliability().add(p, hit).ece()
    after = Reliability().add(cal(p), hit).ece()
    assert before is not None and after is not None and before > 0.08 and after < 0.01
    assert fit_isotonic(p[:100], hit[:100]) is None  # too little held-out data: no calibrator


class _Fixed:
    name = "fixed"

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None,
                ts: np.ndarray | None = None) -> np.ndarray:
        return np.tile(np.array([3, -1]), (hist.shape[0], 1))

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None,
                       ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.predict(hist, device_idx, hour, k), np.tile(np.array([0.5, 0.0]), (hist.shape[0], 1))


def test_calibrated_predictor_maps_probabilities_and_keeps_the_ranking() -> None:
    cal = CalibratedPredictor(_Fixed(), Isotonic(np.array([0.0, 1.0]), np.array([0.0, 0.2]), 1000))
    ids, probs = cal.predict_scored(np.zeros((2, 3), dtype=np.int64), np.zeros(2), np.zeros(2), 2)
    assert ids.tolist() == [[3, -1], [3, -1]]
    np.testing.assert_allclose(probs, [[0.1, 0.0], [0.1, 0.0]])


def test_summary_merges_edges() -> None:
    a = EC(None, Reliability().add(np.array([0.25]), np.array([True])), Reliability().add(np.array([0.25]),
                                                                                            np.array([True])))
    out = summarize_calibration({"edge-00": a})
    assert out["ece"] == out["ece_raw"] == 0.75 and out["calibrator"]["kind"] == "none"
    assert out["per_edge"]["edge-00"] == {"ece": 0.75, "ece_raw": 0.75, "calibrated": False}


def test_the_held_out_view_takes_the_slice_out_of_the_counts(synthetic_run: SyntheticRun) -> None:
    """itemcf's summed table counts the held-out slice too; the view the calibrator is fitted on
    holds exactly what the other events counted (the table made from the fit part alone), for
    directed and symmetric counts, and a model with side information reads that table as well."""
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    fit, held = split_by_time(ex, 0.25)
    n = synthetic_run.n_items

    def coo(e: Examples, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = cooc_table(pa.table({"hist": pa.array(e.hist.tolist(), pa.list_(pa.int32())), "label": e.label}), n)
        rows, cols, vals = (t[c].to_numpy() for c in ("prev_idx", "next_idx", "count"))
        if symmetric:
            return np.r_[rows, cols], np.r_[cols, rows], np.r_[vals, vals]
        return rows, cols, vals

    for symmetric in (False, True):
        whole = CoocTable.from_coo([coo(ex, symmetric)], n, synthetic_run.history_len, 0.6)
        expected = CoocTable.from_coo([coo(fit, symmetric)], n, synthetic_run.history_len, 0.6).to_dense()
        assert whole.to_dense().sum() > expected.sum() > 0
        np.testing.assert_allclose(whole.without(held.hist, held.label, symmetric).to_dense(), expected, atol=1e-4)
    whole = CoocTable.from_coo([coo(ex, False)], n, synthetic_run.history_len, 0.6)
    share = np.full(n, 1.0 / n)
    view = held_out_view(CoocPredictor(whole, share), held.hist, held.label, False)
    assert isinstance(view, CoocPredictor)
    np.testing.assert_allclose(view.table.to_dense(), whole.without(held.hist, held.label).to_dense())
    spec = ModelSpec(n_items=n, dim=4, history_len=synthetic_run.history_len)
    model = ModelPredictor(init_params(spec, np.random.default_rng(0)), spec, top_k, "federated", top_k_with_probs,
                           SideInfo(None, whole))
    seen_by = held_out_view(model, held.hist, held.label, False)
    assert seen_by is not model and model.side is not None and model.side.table is whole  # the served one untouched
    assert isinstance(seen_by, ModelPredictor) and seen_by.side is not None and seen_by.side.table is not None
    np.testing.assert_allclose(seen_by.side.table.to_dense(), view.table.to_dense())
    popularity = PopularityPredictor(np.arange(n, dtype=np.float64))
    assert held_out_view(popularity, held.hist, held.label, False) is popularity


def test_the_held_out_view_takes_the_slice_out_of_the_transitions(synthetic_run: SyntheticRun) -> None:
    """markov_sql's view is ranked from the transitions of the fit part alone."""
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    fit, held = split_by_time(ex, 0.25)
    n = synthetic_run.n_items

    def counts(e: Examples) -> TransitionCounts:
        keys, c = np.unique(e.hist[:, -1] * n + e.label, return_counts=True)
        return TransitionCounts(keys // n, keys % n, c.astype(np.float64), np.bincount(ex.label, minlength=n) + 0.0)

    whole, part = counts(ex), counts(fit)
    pop = PopularityPredictor(whole.views)
    table, probs = whole.ranked(4)
    markov = MarkovPredictor(table, pop, probs, whole)
    view = held_out_view(markov, held.hist, held.label, False)
    assert isinstance(view, MarkovPredictor) and view.counts is not None
    np.testing.assert_array_equal(view.counts.count, part.count)
    np.testing.assert_array_equal(view.table, part.ranked(4)[0])
    assert not np.array_equal(view.table, markov.table)  # the slice's transitions had moved the ranking
    assert held_out_view(MarkovPredictor(markov.table, pop, markov.probs), held.hist, held.label, False).counts is None


def test_the_count_weights_scale_is_the_one_with_most_held_out_hits(synthetic_run: SyntheticRun) -> None:
    """A model whose learned count weights are far too small next to a random embedding part: the
    held-out view's hits pick the largest factor; the served copy carries it, the original does not."""
    from edge_nodes.learning import model as m
    from simulation.replay.calibration import SIDE_SCALES, fit_side_scale, with_side_scale

    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    n = synthetic_run.n_items
    table = CoocTable.from_coo([coo_of(ex, n)], n, synthetic_run.history_len, 0.6)
    spec = ModelSpec(n_items=n, dim=4, history_len=synthetic_run.history_len)
    params = init_params(spec, np.random.default_rng(0))
    m.named(params, spec)["side_w"][...] = [-0.01, 0.05, 0.05]
    model = ModelPredictor(params, spec, top_k, "federated", top_k_with_probs, SideInfo(None, table))
    served, scale = fit_side_scale(model, synthetic_run.examples, "edge-00", synthetic_run.history_len, 0.25, 10)
    assert scale == max(SIDE_SCALES)
    assert isinstance(served, ModelPredictor) and served is not model
    np.testing.assert_allclose(m.named(served.params, spec)["side_w"], np.array([-0.01, 0.05, 0.05]) * scale)
    np.testing.assert_allclose(m.named(model.params, spec)["side_w"], [-0.01, 0.05, 0.05])  # untouched
    # the whole side part scales, the seen weight with the counts
    np.testing.assert_allclose(m.named(with_side_scale(model, 0.5).params, spec)["side_w"], [-0.005, 0.025, 0.025])
    popularity = PopularityPredictor(np.arange(n, dtype=np.float64))
    assert fit_side_scale(popularity, synthetic_run.examples, "edge-00", synthetic_run.history_len, 0.25, 10) == \
        (popularity, None)


def coo_of(e: Examples, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = cooc_table(pa.table({"hist": pa.array(e.hist.tolist(), pa.list_(pa.int32())), "label": e.label}), n)
    return tuple(t[c].to_numpy() for c in ("prev_idx", "next_idx", "count"))  # type: ignore[return-value]


def test_models_reading_one_table_share_its_held_out_view(synthetic_run: SyntheticRun) -> None:
    """Two models on the same counts (federated and centralized in a replay) get one held-out view
    and one computation of the sample's features, equal to what each would compute alone."""
    from edge_nodes.learning import model as m
    from simulation.replay.calibration import _held_out, held_out_features, held_out_pairs

    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    n = synthetic_run.n_items
    table = CoocTable.from_coo([coo_of(ex, n)], n, synthetic_run.history_len, 0.6)
    spec = ModelSpec(n_items=n, dim=4, history_len=synthetic_run.history_len)
    models = []
    for seed in (0, 1):
        params = init_params(spec, np.random.default_rng(seed))
        m.named(params, spec)["side_w"][...] = [-0.5, 0.4, 0.2]
        models.append(ModelPredictor(params, spec, top_k, f"m{seed}", top_k_with_probs, SideInfo(None, table)))
    args = (synthetic_run.examples, "edge-00", synthetic_run.history_len, 0.25)
    (va, fa), (vb, fb) = (held_out_features(p, *args) for p in models)
    assert fa is not None and fa is fb and va.side is vb.side and va.side is not None
    (hist, device, hour, label, users, pos, ts), (all_hist, all_label, all_ts) = _held_out(*args)
    alone = held_out_view(models[1], all_hist, all_label, False, all_ts)
    assert isinstance(alone, ModelPredictor) and alone.side is not None and fa.cooc is not None
    np.testing.assert_array_equal(fa.cooc.toarray(), alone.side.sparse(hist, users, pos, ts).cooc.toarray())
    ids, probs = alone.predict_scored(hist, device, hour, 3, users=users, at=pos, ts=ts)
    got = held_out_pairs(models[1], *args, 3)
    np.testing.assert_array_equal(got[0], probs.ravel())
    np.testing.assert_array_equal(got[1], (ids == label[:, None]).ravel())

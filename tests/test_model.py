"""The numpy next-content model: exact gradients, learning, top-k and file round trips."""

from __future__ import annotations

import numpy as np
import pytest

from edge_nodes.errors import EdgeDataError, ModelFileError
from edge_nodes.learning.catalog_links import load_successor_map, successor_map
from edge_nodes.learning.model import (
    Batch,
    ModelSpec,
    init_params,
    load_params,
    pop_top_k,
    save_params,
    scores,
    top_k,
    top_k_with_probs,
)
from edge_nodes.learning.objective import Negatives, loss_and_grads, sampled_loss_and_grads
from edge_nodes.learning.task import Examples, TrainSettings, evaluate, load_examples, split_by_time, train
from tests.fixtures_federated import SyntheticRun

SUCC = (1, 2, -1, 4, -1, -1, 7, 8, -1)  # two short series: 0->1->2, 3->4, 6->7->8


def _tiny_batch(rng: np.random.Generator, spec: ModelSpec, n: int = 7) -> Batch:
    hist = rng.integers(0, spec.n_items, (n, spec.history_len))
    hist[0, :2] = -1  # padding must be ignored by the gradient too
    label = rng.integers(0, spec.n_items, n)
    hist[1:4, -1], label[1:4] = [0, 3, 6], [1, 4, 7]  # binge rows: the links get a gradient
    label[4] = hist[4, 1]  # a rewatch
    return Batch(hist, rng.integers(0, spec.n_devices, n), rng.integers(0, 24, n), label)


def _tiny_model(seed: int) -> tuple[ModelSpec, list[np.ndarray], Batch, np.random.Generator]:
    spec = ModelSpec(n_items=9, dim=4, history_len=3, successor=SUCC)
    rng = np.random.default_rng(seed)
    params = [p.astype(np.float64) for p in init_params(spec, rng)]
    params[5] = rng.normal(0, 0.1, spec.n_items)
    params[6] = rng.normal(0, 0.5, params[6].shape)
    return spec, params, _tiny_batch(rng, spec), rng


def _check_finite_differences(loss_fn, params: list[np.ndarray], rng: np.random.Generator) -> None:
    _, grads = loss_fn(params)
    eps = 1e-6
    for i, p in enumerate(params):
        for j in rng.choice(p.size, size=min(p.size, 12), replace=False):
            saved = p.flat[j]
            p.flat[j] = saved + eps
            up, _ = loss_fn(params)
            p.flat[j] = saved - eps
            down, _ = loss_fn(params)
            p.flat[j] = saved
            numeric = (up - down) / (2 * eps)
            assert grads[i].flat[j] == pytest.approx(numeric, rel=1e-3, abs=1e-6), (i, j)


def test_full_softmax_gradient_matches_finite_differences() -> None:
    spec, params, batch, rng = _tiny_model(1)
    _check_finite_differences(lambda p: loss_and_grads(p, spec, batch, l2=0.01), params, rng)


def test_sampled_softmax_gradient_matches_finite_differences() -> None:
    spec, params, batch, rng = _tiny_model(2)
    log_q = rng.normal(-1.0, 0.3, spec.n_items)
    neg = Negatives(np.array([0, 2, 4, 7]), log_q[[0, 2, 4, 7]])  # holds some labels: accidental hits
    _check_finite_differences(lambda p: sampled_loss_and_grads(p, spec, batch, neg, log_q, l2=0.01),
                              params, rng)


def test_sampled_softmax_over_the_whole_catalog_is_the_full_softmax() -> None:
    spec, params, batch, _ = _tiny_model(3)
    everything = Negatives(np.arange(spec.n_items), np.zeros(spec.n_items))
    full_loss, full_grads = loss_and_grads(params, spec, batch)
    loss, grads = sampled_loss_and_grads(params, spec, batch, everything, np.zeros(spec.n_items))
    assert loss == pytest.approx(full_loss, rel=1e-9)
    for g, f in zip(grads, full_grads, strict=True):
        np.testing.assert_allclose(g, f, rtol=1e-7, atol=1e-12)


def test_successor_map_follows_season_then_episode() -> None:
    series = np.array([0, 0, -1, 0, 1, 1])
    season = np.array([1, 2, -1, 1, 1, 1])
    episode = np.array([2, 1, -1, 1, 2, 1])
    assert successor_map(series, season, episode).tolist() == [1, -1, -1, 0, -1, 4]


def test_a_few_local_steps_lower_the_loss(synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    spec = ModelSpec(synthetic_run.n_items, 16, synthetic_run.history_len)
    params = init_params(spec, np.random.default_rng(0))
    before = evaluate(params, spec, ex, k=5)["loss"]
    for negatives in (0, 16):
        trained, _ = train(params, spec, ex, TrainSettings(epochs=3, lr=0.05, batch_size=32, l2=1e-6, proximal_mu=0.0,
                                                              negatives=negatives),
                           np.random.default_rng(0))
        after = evaluate(trained, spec, ex, k=5)
        assert after["loss"] < before - 0.3, negatives
        assert after["hit_at_k"] > 0.3, negatives


def test_learns_series_continuation_through_the_catalog_link(synthetic_run: SyntheticRun) -> None:
    ex = Examples.concat([load_examples(synthetic_run.examples, e, synthetic_run.history_len)
                          for e in synthetic_run.edges])
    spec = ModelSpec(synthetic_run.n_items, 16, synthetic_run.history_len,
                     successor=load_successor_map(synthetic_run.catalog))
    params, _ = train(init_params(spec, np.random.default_rng(0)), spec, ex,
                      TrainSettings(epochs=3, lr=0.05, batch_size=32, l2=1e-6, proximal_mu=0.0, negatives=16), np.random.default_rng(0))
    assert params[6][0, -1] > 1.0  # "next episode of the last item" carries a large weight
    hist = np.array([[-1, 0, 1], [-1, 5, 6], [-1, 10, 11], [-1, 15, 16]])  # binged episodes 1 and 2
    top = top_k(params, spec, hist, np.array([0, 1, 2, 3]), np.array([20, 8, 1, 13]), k=1)
    assert top[:, 0].tolist() == [2, 7, 12, 17]


def test_top_k_shape_order_and_file_round_trip(tmp_path) -> None:
    spec = ModelSpec(n_items=12, dim=4, history_len=2, successor=(1, 2, -1, *([-1] * 9)))
    params = init_params(spec, np.random.default_rng(3))
    params[5] = np.arange(12, dtype=np.float32) * 10  # the bias dominates: best = 11, 10, ...
    top = top_k(params, spec, np.array([[0, 1], [-1, 2], [-1, -1]]), np.zeros(3, int), np.zeros(3, int), 4)
    assert top.shape == (3, 4) and top.dtype.kind == "i"
    assert top[0].tolist() == [11, 10, 9, 8]
    params[6][0, -1] = 500.0  # a strong "next episode" link puts item 2 first after item 1
    ids, probs = top_k_with_probs(params, spec, np.array([[0, 1], [-1, 5]]), np.zeros(2, int),
                                  np.zeros(2, int), 3)
    assert ids[:, 0].tolist() == [2, 11] and probs[0, 0] == pytest.approx(1.0)
    assert np.all(np.diff(probs, axis=1) <= 0)
    path = save_params(tmp_path / "m.npz", params, spec)
    loaded, spec2 = load_params(path)
    assert spec2 == spec and spec2.successor == spec.successor
    assert all(np.array_equal(a, b) for a, b in zip(params, loaded, strict=True))
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def test_top_k_probs_are_the_full_softmax_of_the_best_items() -> None:
    """The in-place normalizer gives the same items and probabilities as softmax over every logit."""
    spec = ModelSpec(n_items=300, dim=8, history_len=3)
    rng = np.random.default_rng(11)
    params = init_params(spec, rng)
    params[5] = rng.normal(0, 2.0, spec.n_items).astype(np.float32)
    hist, device, hour = rng.integers(-1, spec.n_items, (50, 3)), rng.integers(0, 5, 50), rng.integers(0, 24, 50)
    z = scores(params, spec, Batch(hist, device, hour)).astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for k in (1, 7, 40):  # 40: the partition path for large k
        ids, probs = top_k_with_probs(params, spec, hist, device, hour, k)
        assert np.array_equal(ids, np.argsort(-p, axis=1, kind="stable")[:, :k])
        np.testing.assert_allclose(probs, np.take_along_axis(p, ids, axis=1), rtol=1e-5)


def test_top_k_ties_go_to_the_smaller_item() -> None:
    z = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    for k in (3, 33):
        kk = min(k, 5)
        cols, vals = pop_top_k(np.pad(z, ((0, 0), (0, 40)), constant_values=-5.0), k)
        assert cols[:, :kk].tolist() == [[1, 2, 4, 0, 3][:kk], [0, 1, 2, 3, 4][:kk]]
        assert vals[0, :3].tolist() == [3.0, 3.0, 3.0]


def test_files_without_catalog_links_still_load(tmp_path) -> None:
    spec = ModelSpec(n_items=6, dim=3, history_len=2)
    params = init_params(spec, np.random.default_rng(0))
    names = ("item_emb", "pos_w", "device_emb", "hour_emb", "out_emb", "out_bias")
    np.savez(tmp_path / "old.npz", spec=np.array('{"n_items": 6, "dim": 3, "history_len": 2, '
                                                 '"n_devices": 5, "n_hours": 24}'),
             **dict(zip(names, params[:6], strict=True)))
    loaded, spec2 = load_params(tmp_path / "old.npz")
    assert spec2 == spec and not loaded[6].any()
    assert top_k(loaded, spec2, np.array([[0, 1]]), np.zeros(1, int), np.zeros(1, int), 3).shape == (1, 3)


def test_load_params_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_params(tmp_path / "missing.npz")
    np.savez(tmp_path / "junk.npz", x=np.zeros(2))
    with pytest.raises(ModelFileError, match="not an edgecache model"):
        load_params(tmp_path / "junk.npz")


def test_time_split_holds_out_the_latest_examples(synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-01", synthetic_run.history_len)
    fit, held = split_by_time(ex, 0.2)
    assert len(fit) + len(held) == len(ex) and len(held) == round(0.2 * len(ex))
    assert fit.ts.max() <= held.ts.min()
    with pytest.raises(EdgeDataError, match="features"):
        load_examples(synthetic_run.examples, "edge-99", synthetic_run.history_len)

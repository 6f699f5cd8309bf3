"""The numpy next-content model: exact gradients, learning, top-k and file round trips."""

from __future__ import annotations

import numpy as np
import pytest

from edge_nodes.errors import EdgeDataError, ModelFileError
from edge_nodes.model import (
    Batch,
    ModelSpec,
    init_params,
    load_params,
    loss_and_grads,
    save_params,
    top_k,
)
from edge_nodes.task import Examples, TrainSettings, evaluate, load_examples, split_by_time, train
from tests.fixtures_federated import SyntheticRun


def _tiny_batch(rng: np.random.Generator, spec: ModelSpec, n: int = 7) -> Batch:
    hist = rng.integers(0, spec.n_items, (n, spec.history_len))
    hist[0, :2] = -1  # padding must be ignored by the gradient too
    return Batch(hist, rng.integers(0, spec.n_devices, n), rng.integers(0, 24, n),
                 rng.integers(0, spec.n_items, n))


def test_gradient_matches_finite_differences() -> None:
    spec = ModelSpec(n_items=9, dim=4, history_len=3)
    rng = np.random.default_rng(1)
    params = [p.astype(np.float64) for p in init_params(spec, rng)]
    params[5] = rng.normal(0, 0.1, spec.n_items)
    batch = _tiny_batch(rng, spec)
    _, grads = loss_and_grads(params, batch, l2=0.01)
    eps = 1e-6
    for i, p in enumerate(params):
        for j in rng.choice(p.size, size=min(p.size, 12), replace=False):
            saved = p.flat[j]
            p.flat[j] = saved + eps
            up, _ = loss_and_grads(params, batch, l2=0.01)
            p.flat[j] = saved - eps
            down, _ = loss_and_grads(params, batch, l2=0.01)
            p.flat[j] = saved
            numeric = (up - down) / (2 * eps)
            assert grads[i].flat[j] == pytest.approx(numeric, rel=1e-3, abs=1e-6), (i, j)


def test_a_few_local_steps_lower_the_loss(synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    spec = ModelSpec(synthetic_run.n_items, 16, synthetic_run.history_len)
    params = init_params(spec, np.random.default_rng(0))
    before = evaluate(params, ex, k=5)["loss"]
    params, _ = train(params, ex, TrainSettings(epochs=3, lr=0.05, batch_size=32),
                      np.random.default_rng(0))
    after = evaluate(params, ex, k=5)
    assert after["loss"] < before - 0.3
    assert after["hit_at_k"] > 0.3


def test_learns_series_continuation(synthetic_run: SyntheticRun) -> None:
    ex = Examples.concat([load_examples(synthetic_run.examples, e, synthetic_run.history_len)
                          for e in synthetic_run.edges])
    spec = ModelSpec(synthetic_run.n_items, 16, synthetic_run.history_len)
    params, _ = train(init_params(spec, np.random.default_rng(0)), ex,
                      TrainSettings(epochs=10, lr=0.05, batch_size=32), np.random.default_rng(0))
    hist = np.array([[-1, 0, 1], [-1, 5, 6], [-1, 10, 11], [-1, 15, 16]])  # binged episodes 1 and 2
    top = top_k(params, spec, hist, np.array([0, 1, 2, 3]), np.array([20, 8, 1, 13]), k=1)
    assert top[:, 0].tolist() == [2, 7, 12, 17]


def test_top_k_shape_order_and_file_round_trip(tmp_path) -> None:
    spec = ModelSpec(n_items=12, dim=4, history_len=2)
    params = init_params(spec, np.random.default_rng(3))
    params[5] = np.arange(12, dtype=np.float32) * 10  # the bias dominates: best = 11, 10, ...
    top = top_k(params, spec, np.array([[0, 1], [-1, 2], [-1, -1]]), np.zeros(3, int), np.zeros(3, int), 4)
    assert top.shape == (3, 4) and top.dtype.kind == "i"
    assert top[0].tolist() == [11, 10, 9, 8]
    path = save_params(tmp_path / "m.npz", params, spec)
    loaded, spec2 = load_params(path)
    assert spec2 == spec
    assert all(np.array_equal(a, b) for a, b in zip(params, loaded, strict=True))
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


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

"""The next-content model: the JAX training objective and its gradients, learning, top-k and file round trips."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from edge_nodes.errors import EdgeDataError, ModelFileError
from edge_nodes.learning import objective
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
from edge_nodes.learning.objective import (
    Negatives,
    NegativeSampler,
    full_softmax_loss,
    padded_rows,
    sampled_softmax_loss,
)
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


def _jax(params: list[np.ndarray]) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(p) for p in params)


def _some_negatives(log_q: np.ndarray) -> Negatives:
    """Items 0, 2, 4, 7 (they hold some labels: accidental hits) in 6 slots, the last two padding."""
    items = np.array([0, 2, 4, 7, 0, 0])
    mask = np.arange(6) < 4
    return Negatives(items, np.where(mask, log_q[items], 0.0), mask)


def test_full_softmax_loss_is_the_cross_entropy_of_the_model_scores() -> None:
    """The JAX loss of a padded batch equals numpy's model.scores cross-entropy + the l2 term."""
    spec, params, batch, _ = _tiny_model(4)
    with jax.enable_x64(True):
        loss = jax.jit(full_softmax_loss)(_jax(params), padded_rows(batch, spec, 10), 0.01)
    z = scores(params, spec, batch)
    z -= z.max(axis=1, keepdims=True)
    assert batch.label is not None
    xent = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), batch.label])
    assert float(loss) == pytest.approx(xent + 0.005 * sum(float(np.vdot(p, p)) for p in params), rel=1e-12)


@pytest.mark.parametrize("sampled", [False, True])
def test_gradients_match_finite_differences(sampled: bool) -> None:
    spec, params, batch, rng = _tiny_model(1 + sampled)
    log_q = rng.normal(-1.0, 0.3, spec.n_items)
    rows = padded_rows(batch, spec, 9)  # padded rows and slots must not leak into the gradient

    def loss(*arrays: jax.Array) -> jax.Array:
        p = _jax(list(arrays))  # check_grads also passes numpy arrays
        if sampled:
            return sampled_softmax_loss(p, rows, _some_negatives(log_q), jnp.asarray(log_q), 0.01)
        return full_softmax_loss(p, rows, 0.01)

    with jax.enable_x64(True):
        check_grads(jax.jit(loss), _jax(params), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-6)


def test_sampled_softmax_over_the_whole_catalog_is_the_full_softmax() -> None:
    spec, params, batch, _ = _tiny_model(3)
    everything = Negatives(np.arange(spec.n_items), np.zeros(spec.n_items), np.ones(spec.n_items, bool))
    rows = padded_rows(batch, spec, 7)
    with jax.enable_x64(True):
        full, full_grads = jax.jit(jax.value_and_grad(full_softmax_loss))(_jax(params), rows, 0.0)
        loss, grads = jax.jit(jax.value_and_grad(sampled_softmax_loss))(_jax(params), rows, everything,
                                                              jnp.zeros(spec.n_items), 0.0)
    assert float(loss) == pytest.approx(float(full), rel=1e-12)
    for g, f in zip(grads, full_grads, strict=True):
        np.testing.assert_allclose(g, f, rtol=1e-9, atol=1e-14)


def test_padding_changes_neither_loss_nor_gradient() -> None:
    """A zero-weight padded row and a masked negative slot count for nothing."""
    spec, params, batch, rng = _tiny_model(5)
    log_q = rng.normal(-1.0, 0.3, spec.n_items)
    neg = _some_negatives(log_q)
    bare = Negatives(neg.items[:4], neg.log_q[:4], neg.mask[:4])
    with jax.enable_x64(True):
        grad = jax.jit(jax.value_and_grad(sampled_softmax_loss))
        want, want_g = grad(_jax(params), padded_rows(batch, spec, 7), bare, jnp.asarray(log_q), 0.01)
        got, got_g = grad(_jax(params), padded_rows(batch, spec, 12), neg, jnp.asarray(log_q), 0.01)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    for g, w in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-14)


def test_negatives_are_unique_draws_in_fixed_slots() -> None:
    labels = np.random.default_rng(0).integers(0, 50, 400)
    sampler = NegativeSampler(labels, 50, draws=40)
    neg = sampler.draw(np.random.default_rng(7))
    drawn = np.unique(np.random.default_rng(7).choice(50, size=40, p=sampler.q))  # the same draws
    assert neg.items.shape == neg.log_q.shape == neg.mask.shape == (40,)
    assert neg.mask.sum() == len(drawn) < 40 and not neg.mask[len(drawn):].any()
    assert neg.items[neg.mask].tolist() == drawn.tolist()
    np.testing.assert_array_equal(neg.log_q[neg.mask], sampler.log_q[drawn])


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
        trained, _ = train(params, spec, ex, _settings(epochs=3, batch_size=32,
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
                      _settings(epochs=3, batch_size=32), np.random.default_rng(0))
    assert params[6][0, -1] > 1.0  # "next episode of the last item" carries a large weight
    hist = np.array([[-1, 0, 1], [-1, 5, 6], [-1, 10, 11], [-1, 15, 16]])  # binged episodes 1 and 2
    top = top_k(params, spec, hist, np.array([0, 1, 2, 3]), np.array([20, 8, 1, 13]), k=1)
    assert top[:, 0].tolist() == [2, 7, 12, 17]


def _settings(**kw: float) -> TrainSettings:
    base = {"epochs": 2, "lr": 0.05, "batch_size": 48, "l2": 1e-6, "proximal_mu": 0.0, "negatives": 16,
            "recency_half_life_days": 0.0, "min_steps": 0}
    return TrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_min_steps_shrinks_the_batch_of_a_small_edge_only() -> None:
    s = _settings(batch_size=512, min_steps=32)
    assert s.batch_for(100_000) == 512          # 195 steps already
    assert s.batch_for(32 * 512) == 512
    assert s.batch_for(5_000) == 157            # ceil(5000 / 32): 32 steps
    assert s.batch_for(500) == 32               # never below MIN_BATCH
    assert _settings(batch_size=512).batch_for(500) == 512  # min_steps 0: off


def test_a_small_edge_learns_more_per_epoch_with_min_steps(synthetic_run: SyntheticRun) -> None:
    """One epoch at a batch larger than the edge is one step; min_steps makes it several."""
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)
    start = init_params(spec, np.random.default_rng(0))
    big = len(ex) * 2
    one = train(start, spec, ex, _settings(epochs=1, batch_size=big), np.random.default_rng(1))[0]
    many = train(start, spec, ex, _settings(epochs=1, batch_size=big, min_steps=8), np.random.default_rng(1))[0]
    assert evaluate(many, spec, ex, k=5)["loss"] < evaluate(one, spec, ex, k=5)["loss"]


def test_same_seed_same_params_and_the_step_compiles_once(synthetic_run: SyntheticRun) -> None:
    """Deterministic for a seed; a short last batch and a second call reuse the compiled step."""
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    assert len(ex) % 48  # the last batch is short: it is padded, not compiled anew
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)
    start = init_params(spec, np.random.default_rng(0))
    runs = [train(start, spec, ex, _settings(), np.random.default_rng(seed)) for seed in (1, 1, 2)]
    compiled = objective._step._cache_size()
    assert train(start, spec, ex, _settings(l2=1e-5), np.random.default_rng(3))[1] > 0
    assert objective._step._cache_size() == compiled  # l2, mu and data are arguments, not constants
    (a, loss_a), (b, loss_b), (c, _) = runs
    assert loss_a == loss_b and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert all(p.dtype == np.float32 and p.flags.writeable for p in a)
    assert all(np.array_equal(p, q) for p, q in zip(start, init_params(spec, np.random.default_rng(0)),
                                                    strict=True))  # the inputs are untouched


def test_fedprox_pulls_towards_the_starting_model(synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-01", synthetic_run.history_len)
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)
    start = init_params(spec, np.random.default_rng(0))

    def drift(mu: float) -> float:
        params, _ = train(start, spec, ex, _settings(proximal_mu=mu), np.random.default_rng(1))
        return float(sum(np.sum((p - s) ** 2) for p, s in zip(params, start, strict=True)))

    free, pulled = drift(0.0), drift(1.0)
    assert pulled < 0.8 * free


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


def test_top_k_passes_by_blocks_of_rows_pop_as_over_the_whole_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few rows (POP_BLOCK_BYTES) choose, return and pop what passes over every row do,
    ties and -inf rows included."""
    from edge_nodes.learning import model

    rng = np.random.default_rng(4)
    z = rng.integers(0, 4, (37, 50)).astype(np.float32)
    z[rng.random(z.shape) < 0.3] = -np.inf
    z[5] = -np.inf
    whole, blocks = z.copy(), z.copy()
    got = pop_top_k(whole, 8)
    monkeypatch.setattr(model, "POP_BLOCK_BYTES", 3 * 50 * 4)  # 3 rows a block
    assert all(np.array_equal(a, b) for a, b in zip(got, pop_top_k(blocks, 8), strict=True))
    assert np.array_equal(whole, blocks)

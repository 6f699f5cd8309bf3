"""The contract every model kind (`model.kind`, edge_nodes/learning/kinds/) passes.

One suite, parametrized over the registry: a new kind is tested by being registered. It checks
the numpy forward pass (replay, evaluation) against the traced JAX one (training), the gradients
against finite differences, that padding is never read, real learning on the smoke trace, the
ArrayRecord and file round trips, FedPer and DP on the real ClientApp, and determinism.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from jax.test_util import check_grads

from aggregator.checkpoint import CheckpointStore
from aggregator.errors import CheckpointError
from aggregator.strategies import build_strategy
from edge_nodes.errors import ModelFileError
from edge_nodes.learning.kinds import HEAD, KINDS, LEAD, LOCAL_OK
from edge_nodes.learning.local_layers import compose, shared_names, split
from edge_nodes.learning.model import (
    Batch,
    ModelSpec,
    check_params,
    init_params,
    load_params,
    save_params,
    scores,
    state,
)
from edge_nodes.learning.objective import Layout, full_softmax_loss, padded_rows, sampled_softmax_loss
from edge_nodes.learning.predictors import PopularityPredictor
from edge_nodes.learning.task import TrainSettings, evaluate, load_examples, split_by_time, train
from tests.fixtures_federated import SyntheticRun
from tests.test_federated import StubGrid, _deliver, _edge_app, _settings, task_identity  # noqa: F401
from tests.test_model import SUCC, _some_negatives, _tiny_batch

pytestmark = pytest.mark.parametrize("kind", list(KINDS))


def _tiny(kind: str, seed: int = 0) -> tuple[ModelSpec, list[np.ndarray], Batch, np.random.Generator]:
    spec = ModelSpec(n_items=9, dim=4, history_len=3, kind=kind, successor=SUCC)
    rng = np.random.default_rng(seed)
    params = [p.astype(np.float64) for p in init_params(spec, rng)]
    named = dict(zip(spec.param_names, params, strict=True))
    named["out_bias"][:] = rng.normal(0, 0.1, spec.n_items)
    named["link_w"][:] = rng.normal(0, 0.5, named["link_w"].shape)
    return spec, params, _tiny_batch(rng, spec), rng


def _jax(params: list[np.ndarray]) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(p) for p in params)


def _settings_for(**kw: float) -> TrainSettings:
    base = {"epochs": 4, "lr": 0.02, "batch_size": 48, "l2": 1e-6, "proximal_mu": 0.0, "negatives": 16,
            "recency_half_life_days": 0.0, "min_steps": 0}
    return TrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_arrays_are_named_shaped_and_share_the_head(kind: str) -> None:
    spec = ModelSpec(n_items=11, dim=6, history_len=4, kind=kind)
    params = init_params(spec, np.random.default_rng(0))
    names = spec.param_names
    assert len(set(names)) == len(names) and names[:1] == LEAD and names[-len(HEAD):] == HEAD
    assert set(LOCAL_OK) <= set(names)
    assert [p.shape for p in params] == spec.shapes() and all(p.dtype == np.float32 for p in params)
    assert state(params, spec, Batch(np.array([[-1, 0, 1, 2]]), np.zeros(1, int), np.zeros(1, int))).shape == (1, 6)


def test_numpy_scores_are_what_the_jax_loss_trains(kind: str) -> None:
    """The replay's numpy forward pass and the traced JAX one are the same function."""
    spec, params, batch, _ = _tiny(kind, 4)
    with jax.enable_x64(True):
        loss = jax.jit(full_softmax_loss, static_argnames="lay")(_jax(params), padded_rows(batch, spec, 10),
                                                                  0.01, lay=Layout.of(spec))
    z = scores(params, spec, batch)
    z -= z.max(axis=1, keepdims=True)
    assert batch.label is not None
    xent = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), batch.label])
    assert float(loss) == pytest.approx(xent + 0.005 * sum(float(np.vdot(p, p)) for p in params), rel=1e-10)


@pytest.mark.parametrize("sampled", [False, True])
def test_gradients_match_finite_differences(kind: str, sampled: bool) -> None:
    spec, params, batch, rng = _tiny(kind, 1 + sampled)
    log_q = rng.normal(-1.0, 0.3, spec.n_items)
    rows, lay = padded_rows(batch, spec, 9), Layout.of(spec)

    def loss(*arrays: jax.Array) -> jax.Array:
        p = _jax(list(arrays))
        if sampled:
            return sampled_softmax_loss(p, rows, _some_negatives(log_q), jnp.asarray(log_q), 0.01, lay)
        return full_softmax_loss(p, rows, 0.01, lay)

    with jax.enable_x64(True):
        check_grads(jax.jit(loss), _jax(params), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-5)


def test_padding_is_never_read(kind: str) -> None:
    """Padded history slots read item 0's embedding only to throw it away: changing it changes
    nothing for rows without item 0."""
    spec = ModelSpec(n_items=9, dim=4, history_len=4, kind=kind)
    params = init_params(spec, np.random.default_rng(2))
    batch = Batch(np.array([[-1, -1, 3, 5], [-1, 2, 7, 8]]), np.array([0, 1]), np.array([3, 4]))
    before = state(params, spec, batch)
    params[0][0] += 5.0
    np.testing.assert_allclose(state(params, spec, batch), before, rtol=1e-6, atol=1e-6)


def test_learns_the_smoke_trace_and_beats_popularity(kind: str, synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-00", synthetic_run.history_len)
    fit, held = split_by_time(ex, 0.2)
    spec = ModelSpec(synthetic_run.n_items, 16, synthetic_run.history_len, kind=kind)
    start = init_params(spec, np.random.default_rng(0))
    before = evaluate(start, spec, held, k=10)
    params, loss = train(start, spec, fit, _settings_for(), np.random.default_rng(0))
    after = evaluate(params, spec, held, k=10)
    pop = PopularityPredictor(np.bincount(fit.label, minlength=spec.n_items))
    top = pop.predict(held.hist, held.device, held.hour, 10)
    pop_hit = float(np.mean((top == held.label[:, None]).any(axis=1)))
    assert np.isfinite(loss) and after["loss"] < before["loss"] - 0.3
    assert after["hit_at_k"] > pop_hit, (after, pop_hit)


def test_same_seed_same_params(kind: str, synthetic_run: SyntheticRun) -> None:
    ex = load_examples(synthetic_run.examples, "edge-01", synthetic_run.history_len)
    spec = ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len, kind=kind)
    start = init_params(spec, np.random.default_rng(0))
    (a, la), (b, lb) = (train(start, spec, ex, _settings_for(epochs=1), np.random.default_rng(5)) for _ in range(2))
    assert la == lb and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_array_record_and_file_round_trips_and_another_kind_is_refused(kind: str, tmp_path: Path) -> None:
    spec = ModelSpec(n_items=12, dim=4, history_len=3, kind=kind, successor=tuple(range(1, 12)) + (-1,))
    params = init_params(spec, np.random.default_rng(3))
    back = ArrayRecord(params).to_numpy_ndarrays()
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(params, back, strict=True))
    loaded, spec2 = load_params(save_params(tmp_path / "m.npz", params, spec))
    assert spec2 == spec and all(np.array_equal(a, b) for a, b in zip(params, loaded, strict=True))
    other = next(k for k in KINDS if k != kind)
    with pytest.raises(ModelFileError, match="model kind"):
        check_params(params, ModelSpec(12, 4, 3, kind=other))
    store = CheckpointStore(tmp_path / "models")
    store.save(1, params, spec)
    with pytest.raises(CheckpointError, match=f"kind='{other}'"):
        store.latest(ModelSpec(12, 4, 3, kind=other, successor=spec.successor))


def test_fedper_splits_only_head_arrays(kind: str) -> None:
    spec = ModelSpec(n_items=7, dim=4, history_len=3, kind=kind)
    params = init_params(spec, np.random.default_rng(0))
    shared, own = split(params, LOCAL_OK, spec)
    assert set(own) == set(LOCAL_OK) and len(shared) == len(shared_names(LOCAL_OK, spec)) == len(params) - 3
    assert all(a is b for a, b in zip(compose(shared, own, LOCAL_OK, spec), params, strict=True))


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedadam", "fedavg+dp"])
def test_a_round_on_the_real_client_app_keeps_local_layers_home(kind: str, strategy: str, synthetic_run: SyntheticRun,
                                                                tmp_path: Path, task_identity: None) -> None:  # noqa: F811
    """Train and evaluate through the ClientApp with FedPer on: replies hold the shared arrays only."""
    dp = strategy.endswith("+dp")
    s = _settings(synthetic_run, tmp_path, kind=kind, strategy=strategy.removesuffix("+dp"), local_layers="out_bias",
                  dp_clip=1.0 if dp else 0.0, dp_noise=0.1 if dp else 0.0)
    spec = ModelSpec(s.n_items, s.dim, s.history_len, kind=kind)
    start = ArrayRecord(split(init_params(spec, np.random.default_rng(0)), ("out_bias",), spec)[0])
    strat, grid, app = build_strategy(s), StubGrid(3), _edge_app(synthetic_run, tmp_path)
    config = ConfigRecord({**s.train_config(), "global-round": 1})
    replies = _deliver(app, grid, list(strat.configure_train(1, start, config, grid)))
    assert not any(r.has_error() for r in replies), [r.error.reason for r in replies if r.has_error()]
    arrays, metrics = strat.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None and np.isfinite(float(metrics["train_loss"]))
    new = arrays.to_numpy_ndarrays()
    assert [a.shape for a in new] == [a.shape for a in start.to_numpy_ndarrays()]
    assert all(np.isfinite(a).all() for a in new)
    assert (tmp_path / "models" / "local_layers" / f"{synthetic_run.edges[0]}.npz").is_file()
    quality = strat.aggregate_evaluate(1, _deliver(app, grid, list(strat.configure_evaluate(1, arrays, config, grid))))
    assert quality is not None and 0.0 <= float(quality["eval_hit_at_k"]) <= 1.0

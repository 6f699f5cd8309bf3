"""FedPer local layers with the real ClientApp and real strategies: what stays on the edge stays there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from aggregator.strategies import build_strategy
from edge_nodes.errors import ModelFileError
from edge_nodes.learning.local_layers import (
    compose,
    composed_path,
    local_path,
    parse_names,
    shared_names,
    split,
)
from edge_nodes.learning.model import PARAM_NAMES, ModelSpec, init_params
from edge_nodes.learning.predictors import ModelPredictor
from tests.fixtures_federated import SyntheticRun
from tests.test_federated import StubGrid, _deliver, _edge_app, _settings, task_identity  # noqa: F401

LOCAL = ("out_bias",)


def _shared_start(run: SyntheticRun, local: tuple[str, ...] = LOCAL) -> ArrayRecord:
    spec = ModelSpec(run.n_items, 8, run.history_len)
    return ArrayRecord(split(init_params(spec, np.random.default_rng(42)), local, spec)[0])


def _send(app, grid: StubGrid, arrays: ArrayRecord, config: dict, kind: str) -> list[Message]:
    msgs = [Message(RecordDict({"arrays": arrays, "config": ConfigRecord(config)}), dst_node_id=n,
                    message_type=kind) for n in grid.ids]
    replies = _deliver(app, grid, msgs)
    assert not any(r.has_error() for r in replies), [r.error.reason for r in replies if r.has_error()]
    return replies


def test_split_and_compose_round_trip_and_bad_names() -> None:
    spec = ModelSpec(7, 4, 3)
    params = init_params(spec, np.random.default_rng(0))
    shared, own = split(params, ("out_bias", "link_w"), spec)
    assert len(shared) == len(PARAM_NAMES) - 2 and set(own) == {"out_bias", "link_w"}
    assert all(a is b for a, b in zip(compose(shared, own, ("link_w", "out_bias"), spec), params, strict=True))
    assert parse_names(" out_bias ,link_w") == ("out_bias", "link_w") and parse_names("") == ()
    with pytest.raises(ModelFileError, match="item_biass"):
        parse_names("item_biass")


def test_replies_carry_only_shared_arrays_and_the_local_part_stays_on_disk(
        synthetic_run: SyntheticRun, tmp_path: Path, task_identity: None) -> None:  # noqa: F811
    s = _settings(synthetic_run, tmp_path, local_layers="out_bias")
    grid, app, start = StubGrid(3), _edge_app(synthetic_run, tmp_path), _shared_start(synthetic_run)
    config = {**s.train_config(), "global-round": 1}
    n_shared = len(shared_names(LOCAL, ModelSpec(synthetic_run.n_items, 8, synthetic_run.history_len)))
    for reply in _send(app, grid, start, config, "train"):
        sent = reply.content["arrays"].to_numpy_ndarrays()
        assert [a.shape for a in sent] == [a.shape for a in start.to_numpy_ndarrays()]
        assert len(sent) == n_shared and set(reply.content.array_records) == {"arrays"}
        assert not any(a.shape == (synthetic_run.n_items,) for a in sent)  # no item-bias vector leaves
    for edge in synthetic_run.edges:
        with np.load(local_path(tmp_path / "models", edge)) as kept:
            assert set(kept.files) == {"out_bias"} and np.abs(kept["out_bias"]).max() > 0
    _send(app, grid, start, config, "evaluate")
    model = ModelPredictor.from_npz(composed_path(tmp_path / "models", synthetic_run.edges[0]), "federated")
    hist = np.full((4, synthetic_run.history_len), -1)
    hist[:, -1] = [0, 1, 2, 3]
    top = model.predict(hist, np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), 3)
    assert top.shape == (4, 3) and (top >= 0).all()


def test_local_layers_persist_between_rounds_and_restart_on_round_one(
        synthetic_run: SyntheticRun, tmp_path: Path, task_identity: None) -> None:  # noqa: F811
    s = _settings(synthetic_run, tmp_path, local_layers="out_bias")
    grid, app, start = StubGrid(3), _edge_app(synthetic_run, tmp_path), _shared_start(synthetic_run)
    _send(app, grid, start, {**s.train_config(), "global-round": 1}, "train")
    path = local_path(tmp_path / "models", synthetic_run.edges[0])
    np.savez(path, out_bias=np.full(synthetic_run.n_items, 50.0, dtype=np.float32))  # a sentinel
    _send(app, grid, start, {**s.train_config(), "global-round": 2}, "train")
    with np.load(path) as kept:
        assert np.abs(kept["out_bias"] - 50.0).max() < 10.0  # round 2 continued from the kept layers
    _send(app, grid, start, {**s.train_config(), "global-round": 1}, "train")
    with np.load(path) as kept:
        assert np.abs(kept["out_bias"]).max() < 10.0  # a fresh run starts over


@pytest.mark.parametrize("name", ["fedavg", "fedadam", "krum", "fedavg+dp"])
def test_strategies_aggregate_only_the_shared_arrays(name: str, synthetic_run: SyntheticRun, tmp_path: Path,
                                                     task_identity: None) -> None:  # noqa: F811
    dp = name.endswith("+dp")
    s = _settings(synthetic_run, tmp_path, strategy=name.removesuffix("+dp"), local_layers="out_bias,link_w",
                  dp_clip=1.0 if dp else 0.0, dp_noise=0.1 if dp else 0.0)
    strategy, grid, app = build_strategy(s), StubGrid(3), _edge_app(synthetic_run, tmp_path)
    start = _shared_start(synthetic_run, ("out_bias", "link_w"))
    msgs = list(strategy.configure_train(1, start, ConfigRecord({**s.train_config(), "global-round": 1}), grid))
    arrays, _ = strategy.aggregate_train(1, _deliver(app, grid, msgs))
    assert arrays is not None
    new = arrays.to_numpy_ndarrays()
    assert [a.shape for a in new] == [a.shape for a in start.to_numpy_ndarrays()]
    assert all(np.isfinite(a).all() for a in new)

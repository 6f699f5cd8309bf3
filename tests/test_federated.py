"""Flower apps without an engine: real strategies, the real ClientApp, real messages.

The strategy contract runs every registered strategy through one round: configure, the real
ClientApp trains on each edge's synthetic partition, aggregate. The reply contract checks
that what an edge sends holds only model arrays and scalar metrics.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.checkpoint import CheckpointStore
from aggregator.errors import StrategyConfigError, TooFewEdges
from aggregator.rounds import RecordedStrategy, contract_violations
from aggregator.settings import ServerSettings
from aggregator.strategies import STRATEGIES, build_strategy, dp_settings
from edge_nodes.learning.client_app import EdgeIdentity, PartitionTable, build_client_app
from edge_nodes.learning.cooc_app import cooc_partition, load_cooc
from edge_nodes.learning.cooc_table import ITEMCF_FILE, CoocTable
from edge_nodes.learning.model import ModelSpec, init_params
from tests.fixtures_federated import SyntheticRun

ROOT = Path(__file__).resolve().parent.parent


class StubGrid:
    """The one Grid call strategies make while configuring a round."""

    def __init__(self, n: int) -> None:
        self.ids = [101 + i for i in range(n)]

    def get_node_ids(self) -> list[int]:
        return list(self.ids)


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Messages need a run identity; the engines set it, these tests set it by hand."""
    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


def _settings(run: SyntheticRun, tmp: Path, **kw: object) -> ServerSettings:
    base = dict(model_dir=str(tmp / "models"), n_items=run.n_items, history_len=run.history_len,
                num_edges=len(run.edges), dim=8, min_nodes=2, lr=0.05, batch_size=64, rounds=2,
                personalize_epochs=1, negatives=0, local_layers="")
    return ServerSettings(**{**base, **kw})  # type: ignore[arg-type]


def _edge_app(run: SyntheticRun, tmp: Path, fail: dict[str, tuple[int, ...]] | None = None):
    ids = tuple(EdgeIdentity(e, i, str(run.examples), str(tmp / "models"), (fail or {}).get(e, ()))
                for i, e in enumerate(run.edges))
    return build_client_app(PartitionTable(ids))


def _deliver(app, grid: StubGrid, messages: list[Message]) -> list[Message]:
    """Run the real ClientApp on each message as its SuperNode would (errors become error replies)."""
    replies = []
    for msg in messages:
        pid = grid.ids.index(msg.metadata.dst_node_id)
        ctx = Context(run_id=1, node_id=msg.metadata.dst_node_id, node_config={"partition-id": pid},
                      state=RecordDict(), run_config={})
        try:
            replies.append(app(msg, ctx))
        except Exception as e:  # what the runtime does with a raising ClientApp
            replies.append(Message(Error(code=1, reason=f"{type(e).__name__}: {e}"), reply_to=msg))
    return replies


def _initial(s: ServerSettings) -> ArrayRecord:
    return ArrayRecord(init_params(ModelSpec(s.n_items, s.dim, s.history_len, kind=s.kind), np.random.default_rng(0)))


@pytest.mark.parametrize("name", [*STRATEGIES, "fedavg+dp"])
def test_every_strategy_builds_and_aggregates_a_round(name: str, synthetic_run: SyntheticRun,
                                                      tmp_path: Path, task_identity: None) -> None:
    dp = name.endswith("+dp")
    s = _settings(synthetic_run, tmp_path, strategy=name.removesuffix("+dp"),
                  dp_clip=1.0 if dp else 0.0, dp_noise=0.1 if dp else 0.0)
    strategy, grid, app = build_strategy(s), StubGrid(3), _edge_app(synthetic_run, tmp_path)
    start = _initial(s)
    msgs = list(strategy.configure_train(1, start, ConfigRecord(s.train_config()), grid))
    arrays, metrics = strategy.aggregate_train(1, _deliver(app, grid, msgs))
    assert arrays is not None and metrics is not None and "train_loss" in metrics
    new = arrays.to_numpy_ndarrays()
    assert [a.shape for a in new] == [a.shape for a in start.to_numpy_ndarrays()]
    assert all(np.isfinite(a).all() for a in new)
    evals = list(strategy.configure_evaluate(1, arrays, ConfigRecord(s.train_config()), grid))
    quality = strategy.aggregate_evaluate(1, _deliver(app, grid, evals))
    assert quality is not None and 0.0 <= float(quality["eval_hit_at_k"]) <= 1.0


@pytest.mark.parametrize("side_info", [False, True])
def test_edge_replies_hold_only_arrays_and_scalar_metrics(side_info: bool, synthetic_run: SyntheticRun, tmp_path: Path,
                                                          task_identity: None) -> None:
    """Also with side information (the users' histories, the summed co-occurrence table): it shapes
    the trained arrays (the side weights move) and never travels itself."""
    s = _settings(synthetic_run, tmp_path, side_info=side_info)
    if side_info:  # what the analytics round leaves in models/ before the model rounds
        coo = [load_cooc(cooc_partition(synthetic_run.examples, e), s.n_items) for e in synthetic_run.edges]
        CoocTable.from_coo(coo, s.n_items, s.cooc_window, s.cooc_decay).save(Path(s.model_dir) / ITEMCF_FILE)
    grid, app, start = StubGrid(3), _edge_app(synthetic_run, tmp_path), _initial(s)
    config = ConfigRecord({**s.train_config(), "personalize-epochs": 1, "global-round": 1})
    kinds = {"train": True, "evaluate": False, "evaluate.personalize": False}
    user_ids = {u for e in synthetic_run.edges for u in _user_ids(synthetic_run, e)}
    for kind, with_arrays in kinds.items():
        msgs = [Message(RecordDict({"arrays": start, "config": config}), dst_node_id=n, message_type=kind)
                for n in grid.ids]
        for reply in _deliver(app, grid, msgs):
            assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
            content = reply.content
            assert contract_violations(content, with_arrays=with_arrays) == []
            assert set(content.metric_records) == {"metrics"} and not content.config_records
            assert set(content.array_records) == ({"arrays"} if with_arrays else set())
            if with_arrays:
                shapes = [a.shape for a in content["arrays"].to_numpy_ndarrays()]
                assert shapes == [a.shape for a in start.to_numpy_ndarrays()]
                assert np.any(content["arrays"].to_numpy_ndarrays()[7]) == side_info
            text = json.dumps(dict(content["metrics"]))
            assert not any(u in text for u in user_ids)


def _user_ids(run: SyntheticRun, edge: str) -> set[str]:
    import pyarrow.parquet as pq
    return set(pq.read_table(run.examples / f"edge_id={edge}", columns=["user_id"]).column(0).to_pylist())


def test_contract_refuses_strings_lists_and_configs(task_identity: None) -> None:
    from flwr.app import MetricRecord
    bad = RecordDict({"metrics": MetricRecord({"loss": [1.0, 2.0]}), "cfg": ConfigRecord({"user": "U1"})})
    problems = contract_violations(bad, with_arrays=False)
    assert any("not a scalar" in p for p in problems) and any("config record" in p for p in problems)


def test_failed_edges_are_counted_and_training_stops_below_min_nodes(
        synthetic_run: SyntheticRun, tmp_path: Path, task_identity: None) -> None:
    s = _settings(synthetic_run, tmp_path, min_nodes=2)
    store = CheckpointStore(s.model_dir)
    spec = ModelSpec(s.n_items, s.dim, s.history_len)
    grid = StubGrid(3)
    app = _edge_app(synthetic_run, tmp_path, fail={"edge-01": (1, 2), "edge-02": (2,)})
    rec = RecordedStrategy(build_strategy(s), store, spec, s)
    msgs = list(rec.configure_train(1, _initial(s), ConfigRecord(s.train_config()), grid))
    arrays, _ = rec.aggregate_train(1, _deliver(app, grid, msgs))
    assert arrays is not None and rec.record["failures"] == 1 and rec.record["replies"] == 2
    assert "failure injected in round 1" in rec.record["failure_reasons"][0]
    msgs = list(rec.configure_train(2, arrays, ConfigRecord(s.train_config()), grid))
    with pytest.raises(TooFewEdges, match="min_nodes = 2"):
        rec.aggregate_train(2, _deliver(app, grid, msgs))
    assert store.read_rounds()[-1]["failures"] == 2


def test_strategy_settings_errors_name_the_key(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    with pytest.raises(StrategyConfigError, match="federated.dp_clip"):
        build_strategy(_settings(synthetic_run, tmp_path, dp_noise=1.0))
    with pytest.raises(StrategyConfigError, match="byzantine_nodes"):
        build_strategy(_settings(synthetic_run, tmp_path, strategy="bulyan", byzantine_nodes=1))
    with pytest.raises(StrategyConfigError, match="choose from"):
        build_strategy(_settings(synthetic_run, tmp_path, strategy="fedsgd"))
    dp = dp_settings(_settings(synthetic_run, tmp_path, dp_noise=1.0, dp_clip=2.0))
    assert dp["enabled"] and dp["noise_multiplier"] == 1.0 and dp["clipping_norm"] == 2.0


def test_run_config_round_trip_and_pyproject_declares_every_key(synthetic_run: SyntheticRun,
                                                               tmp_path: Path) -> None:
    s = _settings(synthetic_run, tmp_path, resume=True, dp_clip=0.5)
    assert ServerSettings.from_run_config(s.to_run_config()) == s
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(declared) == set(s.to_run_config())


def test_edges_train_with_the_servers_min_local_steps(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    from edge_nodes.learning.client_app import _settings as edge_settings

    s = _settings(synthetic_run, tmp_path, min_local_steps=24, batch_size=1024)
    local = edge_settings(dict(s.train_config()), epochs=1)
    assert (local.min_steps, local.batch_size, local.batch_for(2400)) == (24, 1024, 100)


def test_edges_receive_the_catalog_successor_map(synthetic_run: SyntheticRun, tmp_path: Path,
                                                 task_identity: None) -> None:
    from edge_nodes.learning.model import load_params
    s = _settings(synthetic_run, tmp_path, catalog_path=str(synthetic_run.catalog), negatives=8)
    spec = s.model_spec()
    assert spec.successor[:6] == (1, 2, 3, 4, -1, 6)
    grid, app = StubGrid(3), _edge_app(synthetic_run, tmp_path)
    config = ConfigRecord({**s.edge_config(spec), "personalize-epochs": 1, "global-round": 1})
    msgs = [Message(RecordDict({"arrays": _initial(s), "config": config}), dst_node_id=n,
                    message_type="evaluate.personalize") for n in grid.ids]
    assert not any(r.has_error() for r in _deliver(app, grid, msgs))
    _, saved = load_params(tmp_path / "models" / "personalized" / "edge-01.npz")
    assert saved == spec and saved.successor == spec.successor

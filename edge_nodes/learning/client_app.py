"""The Flower ClientApp of one edge: train, evaluate and personalize on its own partition only.

An edge learns who it is from its SuperNode's node_config (deployment: `edge-id`,
`edge-index`, `examples-dir`, `model-dir`, optional `fail-rounds` "2,3") or, in the
simulation engine, from a table indexed by Flower's `partition-id`. Hyperparameters arrive
with the global model. Replies hold only the model arrays and scalar metrics. With
`local-layers` set, the edge keeps those arrays on its own disk (edge_nodes/learning/local_layers.py)
and sends only the shared ones.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge_nodes.errors import InjectedFailure
from edge_nodes.learning.cooc_app import add_cooc_query
from edge_nodes.learning.cooc_table import ITEMCF_FILE
from edge_nodes.learning.local_layers import (
    compose,
    composed_path,
    load_local,
    parse_names,
    save_local,
    spec_of_shared,
    split,
)
from edge_nodes.learning.model import ModelSpec, Params, check_params, save_params
from edge_nodes.learning.side import SideInfo
from edge_nodes.learning.task import (
    Examples,
    TrainSettings,
    check_examples,
    evaluate,
    load_examples,
    split_by_time,
    train,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeIdentity:
    """Who an edge is and where its own data and models live."""

    edge_id: str
    edge_index: int
    examples_dir: str
    model_dir: str
    fail_rounds: tuple[int, ...] = ()


def identity_from_node_config(context: Context) -> EdgeIdentity:
    """Deployment: the SuperNode was started with --node-config naming its edge."""
    nc = context.node_config
    fails = str(nc.get("fail-rounds", "")).replace(",", " ").split()
    return EdgeIdentity(str(nc["edge-id"]), int(nc["edge-index"]), str(nc["examples-dir"]),
                        str(nc["model-dir"]), tuple(int(r) for r in fails))


@dataclass(frozen=True)
class PartitionTable:
    """Simulation: Flower's partition-id i is the i-th edge of this table."""

    edges: tuple[EdgeIdentity, ...]

    def __call__(self, context: Context) -> EdgeIdentity:
        return self.edges[int(context.node_config["partition-id"])]


# A simulation worker serves whichever partitions Flower hands it, train and evaluate every
# round: it keeps every edge it has seen (together, one copy of the training examples) rather
# than re-reading Parquet. 16 entries thrashed at 64 edges on 2 workers (2.7x no-op round time).
@functools.lru_cache(maxsize=1024)
def _split(examples_dir: str, edge_id: str, history_len: int, eval_fraction: float) -> tuple[Examples, Examples]:
    return split_by_time(load_examples(examples_dir, edge_id, history_len), eval_fraction)


@functools.lru_cache(maxsize=1024)
def _side(examples_dir: str, model_dir: str, edge_id: str, n_items: int) -> SideInfo:
    """This edge's user histories (its own features/history) and the federation's summed
    co-occurrence table (models/itemcf.npz, written by the analytics round before the model rounds;
    absent under DP, whose counts would not be private: that signal is then zero)."""
    return SideInfo.from_files(Path(examples_dir).parent / "history" / f"edge_id={edge_id}",
                               Path(model_dir) / ITEMCF_FILE, n_items)


def _local_layers(cfg: dict[str, Any]) -> tuple[str, ...]:
    return parse_names(str(cfg.get("local-layers", "")))


def _full_model(received: Params, cfg: dict[str, Any], who: EdgeIdentity, fresh: bool) -> tuple[Params, ModelSpec]:
    """The received arrays, composed with this edge's kept local layers when there are any."""
    local, successor = _local_layers(cfg), tuple(cfg.get("successor", ()))
    spec = spec_of_shared(received, int(cfg["history-len"]), str(cfg["model-kind"]), successor)
    if not local:
        check_params(received, spec)
        return received, spec
    own = load_local(who.model_dir, who.edge_id, spec, local, int(cfg["seed"]), fresh)
    params = compose(received, own, local, spec)
    check_params(params, spec)
    return params, spec


def _setup(msg: Message, who: EdgeIdentity,
           training: bool = False) -> tuple[Params, ModelSpec, dict[str, Any], Examples, Examples, SideInfo | None]:
    """Full params (global + own local layers), their spec, config, this edge's (train, held-out)
    examples and its side information (None unless `side-info` is on).

    The spec's successor map (public catalog structure) arrives in the config with the model.
    Injected failures raise. Training round 1 starts the local layers afresh.
    """
    cfg: dict[str, Any] = dict(msg.content.config_records["config"])
    rnd = int(cfg.get("global-round", cfg.get("server-round", 0)))
    if rnd in who.fail_rounds:
        raise InjectedFailure(f"{who.edge_id}: failure injected in round {rnd} (federated.fail_edges)")
    received = msg.content.array_records["arrays"].to_numpy_ndarrays()
    params, spec = _full_model(received, cfg, who, fresh=training and rnd <= 1)
    fit, held = _split(who.examples_dir, who.edge_id, spec.history_len, float(cfg["eval-fraction"]))
    check_examples(fit, spec, who.edge_id)
    side = _side(who.examples_dir, who.model_dir, who.edge_id, spec.n_items) if cfg.get("side-info") else None
    return params, spec, cfg, fit, held, side


def _settings(cfg: dict[str, Any], epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, lr=float(cfg["lr"]), batch_size=int(cfg["batch-size"]),
                         l2=float(cfg["l2"]), proximal_mu=float(cfg.get("proximal-mu", 0.0)),
                         negatives=int(cfg.get("negatives", 0)),
                         recency_half_life_days=float(cfg.get("recency-half-life-days", 0.0)),
                         min_steps=int(cfg.get("min-local-steps", 0)))


def _rng(cfg: dict[str, Any], who: EdgeIdentity) -> np.random.Generator:
    return np.random.default_rng([int(cfg["seed"]), who.edge_index, int(cfg.get("global-round", 0))])


def _reply(msg: Message, metrics: dict[str, Any], params: Params | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(dict(metrics))})
    if params is not None:
        content["arrays"] = ArrayRecord(params)
    return Message(content=content, reply_to=msg)


def _quality(prefix: str, params: Params, spec: ModelSpec, held: Examples, k: int,
             side: SideInfo | None) -> dict[str, float]:
    return {f"{prefix}{key}": value for key, value in evaluate(params, spec, held, k, side=side).items()}


def build_client_app(identify: Callable[[Context], EdgeIdentity] = identity_from_node_config) -> ClientApp:
    """A ClientApp whose edge identity comes from `identify(context)`."""
    app = ClientApp()

    @app.train()
    def fit(msg: Message, context: Context) -> Message:
        who = identify(context)
        params, spec, cfg, ex, _, side = _setup(msg, who, training=True)
        params, loss = train(params, spec, ex, _settings(cfg, int(cfg["local-epochs"])), _rng(cfg, who), side)
        if local := _local_layers(cfg):  # keep the local part here; send only the shared arrays
            params, own = split(params, local, spec)
            save_local(who.model_dir, who.edge_id, own)
        return _reply(msg, {"train_loss": loss, "num-examples": len(ex)}, params)

    @app.evaluate()
    def held_out(msg: Message, context: Context) -> Message:
        who = identify(context)
        params, spec, cfg, _, held, side = _setup(msg, who)
        if _local_layers(cfg):  # this round's global model as this edge serves it
            save_params(composed_path(who.model_dir, who.edge_id), params, spec)
        return _reply(msg, {**_quality("eval_", params, spec, held, int(cfg["top-k"]), side),
                            "num-examples": len(held)})

    @app.evaluate("personalize")
    def personalize(msg: Message, context: Context) -> Message:
        who = identify(context)
        params, spec, cfg, ex, held, side = _setup(msg, who)
        k = int(cfg["top-k"])
        own, _ = train(params, spec, ex, _settings(cfg, int(cfg["personalize-epochs"])), _rng(cfg, who), side)
        save_params(Path(who.model_dir) / "personalized" / f"{who.edge_id}.npz", own, spec)
        return _reply(msg, {**_quality("global_", params, spec, held, k, side),
                            **_quality("personalized_", own, spec, held, k, side),
                            "edge-index": who.edge_index, "num-examples": len(held)})

    add_cooc_query(app, identify)  # federated analytics for itemcf (edge_nodes/learning/cooc_app.py)
    return app


app = build_client_app()

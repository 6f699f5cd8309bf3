"""The Flower ServerApp: global model, strategy by name, rounds, checkpoints, personalization.

Deployment loads `aggregator.server_app:app`, which reads its settings from Flower's
run_config; the simulation engine builds the same app around a `ServerSettings` object.
The server only ever sees arrays and scalar metrics; it never touches logs or features.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from aggregator.analytics import run_cooc_round
from aggregator.checkpoint import CheckpointStore
from aggregator.rounds import RecordedStrategy, contract_violations, wait_for_edges
from aggregator.settings import ServerSettings
from aggregator.strategies import build_strategy, dp_settings
from edge_nodes.learning.local_layers import parse_names, split
from edge_nodes.learning.model import ModelSpec, Params, init_params

log = logging.getLogger(__name__)
PERSONALIZE = "evaluate.personalize"


def starting_point(store: CheckpointStore, spec: ModelSpec, s: ServerSettings) -> tuple[int, Params]:
    """Resume from the last checkpoint when asked (and one exists), else a fresh model.

    Only the shared arrays are returned: the local layers (FedPer) never go through the server.
    """
    local = parse_names(s.local_layers)
    if s.resume and (found := store.latest(spec)) is not None:
        store.truncate_rounds(found[0])
        log.info("resuming from round %d (%s)", found[0], store.path(found[0]))
        return found[0], split(found[1], local, spec)[0]
    store.reset()
    return 0, split(init_params(spec, np.random.default_rng(s.seed)), local, spec)[0]


def personalize(grid: Grid, params: Params, spec: ModelSpec, s: ServerSettings) -> dict[str, Any]:
    """Ask every edge to fine-tune the final global model locally; collect global vs personal quality."""
    config = ConfigRecord({**s.edge_config(spec), "personalize-epochs": s.personalize_epochs,
                           "global-round": s.rounds + 1})
    content = RecordDict({"arrays": ArrayRecord(params), "config": config})
    messages = [Message(content=content, message_type=PERSONALIZE, dst_node_id=node)
                for node in grid.get_node_ids()]
    replies = list(grid.send_and_receive(messages, timeout=s.round_timeout_s))
    good = [r for r in replies if not r.has_error() and not contract_violations(r.content, with_arrays=False)]
    rows: list[dict[str, Any]] = [dict(r.content.metric_records["metrics"]) for r in good]
    per_edge = {int(m["edge-index"]): m for m in rows}
    total = sum(float(m["num-examples"]) for m in per_edge.values()) or 1.0

    def mean(key: str) -> float:
        return sum(float(m[key]) * float(m["num-examples"]) for m in per_edge.values()) / total

    out: dict[str, Any] = {"epochs": s.personalize_epochs, "edges": len(good),
                           "failures": len(replies) - len(good)}
    for model in ("global", "personalized"):
        out[model] = {k: mean(f"{model}_{k}") for k in ("loss", "hit_at_k", "ndcg_at_k")} if good else {}
    out["per_edge"] = {str(i): per_edge[i] for i in sorted(per_edge)}
    return out


def run_federated(grid: Grid, s: ServerSettings) -> dict[str, Any]:
    """All rounds of federated training with checkpoints; writes models/federated.json."""
    store = CheckpointStore(s.model_dir)
    spec = s.model_spec()
    start, params = starting_point(store, spec, s)
    random.seed(s.seed)  # Flower samples nodes with `random`
    local = parse_names(s.local_layers)
    fill = split(init_params(spec, np.random.default_rng(s.seed)), local, spec)[1]
    strategy = RecordedStrategy(build_strategy(s), store, spec, s, offset=start, local_fill=fill)
    summary: dict[str, Any] = {"strategy": s.strategy, "status": "running", "resumed_from_round": start,
                               "dp": dp_settings(s), "local_layers": list(local)}
    store.write_summary(summary)
    try:
        wait_for_edges(grid, s)
        summary["itemcf"] = run_cooc_round(grid, s)  # federated analytics before the model rounds
        store.write_summary(summary)
        if start < s.rounds:
            strategy.start(grid, ArrayRecord(params), num_rounds=s.rounds - start,
                           timeout=s.round_timeout_s, train_config=ConfigRecord(s.edge_config(spec)),
                           evaluate_config=ConfigRecord(s.edge_config(spec)), evaluate_fn=strategy.after_round)
            if strategy.last_arrays is not None:
                params = strategy.last_arrays.to_numpy_ndarrays()
        if s.personalize_epochs > 0:
            summary["personalized"] = personalize(grid, params, spec, s)
    except Exception as e:
        summary.update(status="failed", error=f"{type(e).__name__}: {e}")
        store.write_summary(summary)
        raise
    summary.update(status="ok", replies_checked=strategy.replies_checked)
    store.write_summary(summary)
    return summary


def build_server_app(settings_for: Callable[[Context], ServerSettings] | None = None) -> ServerApp:
    """A ServerApp whose settings come from `settings_for(context)` (default: run_config)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings_for(context) if settings_for else ServerSettings.from_run_config(dict(context.run_config))
        run_federated(grid, s)

    return app


app = build_server_app()

"""Round bookkeeping around any Flower strategy: failures, the reply contract, checkpoints.

`RecordedStrategy` delegates sampling and aggregation to the configured Flower strategy and
adds what the framework promises: failed edges are counted and left out (the round
aggregates what it got), replies that carry more than arrays and scalar metrics are refused
(the privacy boundary), training stops with `TooFewEdges` below `min_nodes`, and after every
round the global model is checkpointed and the round recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from aggregator.checkpoint import CheckpointStore
from aggregator.errors import TooFewEdges
from aggregator.settings import ServerSettings
from edge_nodes.learning.local_layers import compose
from edge_nodes.learning.model import ModelSpec
from monitoring import metrics as prom

log = logging.getLogger(__name__)
REPLY_ARRAYS = "arrays"


def contract_violations(content: RecordDict, *, with_arrays: bool) -> list[str]:
    """Why a reply breaks the edge->server contract (only arrays + scalar metrics); [] if it holds."""
    problems = [f"config record {k!r}" for k in content.config_records]
    allowed = {REPLY_ARRAYS} if with_arrays else set()
    problems += [f"array record {k!r}" for k in content.array_records if k not in allowed]
    for name, record in content.metric_records.items():
        problems += [f"metric {name}.{k} is not a scalar" for k, v in record.items()
                     if isinstance(v, bool) or not isinstance(v, (int, float))]
    return problems


def error_reason(text: str) -> str:
    """The edge's own message from a Flower error reply (its last line, without wrapper noise)."""
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    for marker in ("Message: ", ":<'"):  # simulation and deployment wrap the message differently
        last = last.split(marker, 1)[-1]
    return last.rstrip("'>")[:200]


def wait_for_edges(grid: Grid, s: ServerSettings) -> None:
    """Give every edge time to connect; go on with >= min_nodes, else stop clearly."""
    deadline = time.monotonic() + s.connect_timeout_s
    while len(list(grid.get_node_ids())) < s.num_edges and time.monotonic() < deadline:
        time.sleep(0.5)
    connected = len(list(grid.get_node_ids()))
    if connected < s.min_nodes:
        raise TooFewEdges(f"only {connected} of {s.num_edges} edges connected within "
                          f"{s.connect_timeout_s:.0f}s; federated.min_nodes = {s.min_nodes}. "
                          "Check that the SuperNodes run and reach the SuperLink")


def _reply_order(msg: Message) -> str:
    """A content-based order so aggregation sums in the same order whatever the arrival."""
    return json.dumps({k: dict(r) for k, r in msg.content.metric_records.items()}, sort_keys=True)


class RecordedStrategy(Strategy):
    """Wraps a Flower strategy; numbers rounds from `offset` (resume) and records each one.

    With local layers (FedPer) the strategy sees only the shared arrays; checkpoints fill the
    local slots with `local_fill` (their initial values) so a round file stays a whole model.
    """

    def __init__(self, inner: Strategy, store: CheckpointStore, spec: ModelSpec,
                 settings: ServerSettings, offset: int = 0,
                 local_fill: dict[str, np.ndarray] | None = None) -> None:
        self.inner, self.store, self.spec, self.s, self.offset = inner, store, spec, settings, offset
        self.local_fill = local_fill or {}
        self.record: dict[str, Any] = {}
        self.last_arrays: ArrayRecord | None = None
        self.replies_checked = 0
        self._waited = False

    def summary(self) -> None:
        self.inner.summary()

    def _wait_for_edges(self, grid: Grid) -> None:
        wait_for_edges(grid, self.s)
        self._waited = True

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if not self._waited:
            self._wait_for_edges(grid)
        n = self.offset + server_round
        config["global-round"] = n
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.record = {"round": n, "sampled": len(messages), "t0": time.perf_counter()}
        return messages

    def _screen(self, replies: Iterable[Message], with_arrays: bool) -> tuple[list[Message], list[str]]:
        """Split replies into usable ones and failure reasons (errors or contract breaches)."""
        ok: list[Message] = []
        reasons: list[str] = []
        for msg in replies:
            self.replies_checked += 1
            if msg.has_error():
                reasons.append(error_reason(str(msg.error.reason)))
                continue
            problems = contract_violations(msg.content, with_arrays=with_arrays)
            if problems:
                reasons.append("reply refused: " + "; ".join(problems))
                continue
            ok.append(msg)
        for reason in reasons:
            log.warning("round %s: edge failed: %s", self.record.get("round"), reason)
        return sorted(ok, key=_reply_order), reasons

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ok, reasons = self._screen(replies, with_arrays=True)
        self.record.update(failures=len(reasons), failure_reasons=reasons, replies=len(ok))
        prom.record_edge_failures(len(reasons))
        if len(ok) < self.s.min_nodes:
            self.record["aggregated"] = False
            self.store.append_round(self._finish_record())
            raise TooFewEdges(f"round {self.record['round']}: {len(ok)} edges replied and "
                              f"{len(reasons)} failed, below federated.min_nodes = {self.s.min_nodes}; "
                              f"failures: {reasons[:3]}")
        arrays, metrics = self.inner.aggregate_train(server_round, ok)
        self.record["aggregated"] = arrays is not None
        if metrics is not None:
            self.record["train_loss"] = float(metrics.get("train_loss", float("nan")))  # type: ignore[arg-type]
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        config["global-round"] = self.offset + server_round
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        ok, reasons = self._screen(replies, with_arrays=False)
        self.record["eval_failures"] = len(reasons)
        metrics = self.inner.aggregate_evaluate(server_round, ok) if ok else None
        for key in ("eval_loss", "eval_hit_at_k", "eval_ndcg_at_k"):
            if metrics is not None and key in metrics:
                self.record[key] = float(metrics[key])  # type: ignore[arg-type]
        self.record["eval_examples"] = sum(int(m.content.metric_records["metrics"]["num-examples"])  # type: ignore[arg-type,misc]
                                           for m in ok)
        return metrics

    def _finish_record(self) -> dict[str, Any]:
        rec = dict(self.record)
        rec["seconds"] = round(time.perf_counter() - rec.pop("t0", time.perf_counter()), 3)
        return rec

    def after_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower's evaluate_fn hook: checkpoint the global model, then record the round."""
        if server_round == 0:
            return None
        self.last_arrays = arrays
        rec = self._finish_record()
        params = compose(arrays.to_numpy_ndarrays(), self.local_fill, tuple(self.local_fill), self.spec)
        self.store.save(rec["round"], params, self.spec)
        self.store.append_round(rec)
        prom.record_round(rec["round"], rec.get("train_loss"), rec.get("eval_hit_at_k"))
        log.info("round %d: train_loss %.4f eval hit@k %.4f failures %d", rec["round"],
                 rec.get("train_loss", float("nan")), rec.get("eval_hit_at_k", float("nan")),
                 rec.get("failures", 0))
        return None

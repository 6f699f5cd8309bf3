"""One round of federated analytics: every edge's co-occurrence counts, summed into models/itemcf.npz.

The server sends `query.cooc` to every connected edge; each replies with its own counts as
three COO arrays (`rows`, `cols`, `counts`) in its `arrays` record plus scalar metrics, nothing
else (edge_nodes/learning/cooc_app.py). Replies are screened like training replies
(`contract_violations`: arrays + scalars only) and for the COO shape; the usable ones are summed
in edge order (deterministic floats) into the CSR table the `itemcf` policy reads. Fewer usable
replies than federated.min_nodes write no table (the policy is then skipped and reported), and
training goes on. The counts are not noised (federated.dp_* covers model updates only), so
with DP on the round is skipped and no counts leave the edges.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from aggregator.rounds import REPLY_ARRAYS, contract_violations, error_reason
from aggregator.settings import ServerSettings
from edge_nodes.learning.cooc_app import COOC_ARRAYS, COOC_QUERY
from edge_nodes.learning.cooc_table import COO, ITEMCF_FILE, CoocTable

log = logging.getLogger(__name__)


def coo_problems(content: RecordDict, n_items: int) -> list[str]:
    """Why a reply's arrays are not one edge's COO counts ([] if they are)."""
    record = content.array_records.get(REPLY_ARRAYS)
    if record is None or set(record) != set(COOC_ARRAYS):
        return [f"arrays must be exactly {list(COOC_ARRAYS)}, got {sorted(record or [])}"]
    rows, cols, counts = (record[name].numpy() for name in COOC_ARRAYS)
    if not (rows.ndim == cols.ndim == counts.ndim == 1 and rows.size == cols.size == counts.size):
        return [f"COO arrays must be 1-D of one length, got {rows.shape}, {cols.shape}, {counts.shape}"]
    if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= n_items):
        return [f"item indices outside 0..{n_items - 1}"]
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        return ["counts must be finite and non-negative"]
    return []


def screen(replies: list[Message], n_items: int) -> tuple[list[tuple[int, COO]], list[str]]:
    """Usable replies as (edge-index, COO), sorted by edge; failure reasons for the rest."""
    ok: list[tuple[int, COO]] = []
    reasons: list[str] = []
    for msg in replies:
        if msg.has_error():
            reasons.append(error_reason(str(msg.error.reason)))
            continue
        problems = contract_violations(msg.content, with_arrays=True) or coo_problems(msg.content, n_items)
        if problems:
            reasons.append("reply refused: " + "; ".join(problems))
            continue
        record = msg.content.array_records[REPLY_ARRAYS]
        index = int(msg.content.metric_records["metrics"]["edge-index"])  # type: ignore[arg-type]
        ok.append((index, tuple(record[name].numpy() for name in COOC_ARRAYS)))  # type: ignore[arg-type]
    return sorted(ok, key=lambda p: p[0]), reasons


def sum_cooc(parts: list[tuple[int, COO]], s: ServerSettings) -> CoocTable:
    """The edges' counts summed (in edge order) into the table the itemcf policy reads."""
    return CoocTable.from_coo([coo for _, coo in parts], s.n_items, s.cooc_window, s.cooc_decay,
                              s.cooc_half_life_days, s.cooc_ref_s)


def run_cooc_round(grid: Grid, s: ServerSettings) -> dict[str, Any]:
    """Query every connected edge, sum what passes the contract, write models/itemcf.npz; a summary."""
    (Path(s.model_dir) / ITEMCF_FILE).unlink(missing_ok=True)  # never serve an earlier run's table
    if s.dp_noise > 0:  # the counts would leave the edges exact: no analytics under DP (docs/federated.md)
        return {"status": "skipped", "reason": "federated.dp_noise > 0: co-occurrence counts are not noised"}
    t0 = time.perf_counter()
    config = ConfigRecord({"n-items": s.n_items})
    messages = [Message(content=RecordDict({"config": config}), message_type=f"query.{COOC_QUERY}",
                        dst_node_id=node) for node in grid.get_node_ids()]
    replies = list(grid.send_and_receive(messages, timeout=s.round_timeout_s))
    parts, reasons = screen(replies, s.n_items)
    for reason in reasons:
        log.warning("itemcf analytics: edge failed: %s", reason)
    out: dict[str, Any] = {"queried": len(messages), "replies": len(parts), "failures": len(reasons),
                           "failure_reasons": reasons}
    if len(parts) < s.min_nodes:
        log.warning("itemcf analytics: %d usable replies < federated.min_nodes = %d; no table written",
                    len(parts), s.min_nodes)
        return {**out, "status": "failed", "seconds": round(time.perf_counter() - t0, 3)}
    table = sum_cooc(parts, s)
    table.save(Path(s.model_dir) / ITEMCF_FILE)
    log.info("itemcf analytics: %d edges, %d pairs summed", len(parts), table.indices.size)
    return {**out, "status": "ok", "pairs": int(table.indices.size), "total": float(table.counts.sum()),
            "seconds": round(time.perf_counter() - t0, 3)}

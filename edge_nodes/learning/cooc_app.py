"""Federated analytics on an edge: its item co-occurrence counts, as arrays, for the server to sum.

The edge answers one Flower query (`query.cooc`) with its own `features/cooc` partition
(Spark's counts, docs/internals.md) as three COO arrays in the reply's `arrays` record -
`rows` (prev_idx), `cols` (next_idx), `counts` - plus scalar metrics. No event, user or
timestamp leaves the edge: only per-pair sums over its users (the same boundary as model
arrays; not differentially private, see docs/federated.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge_nodes.errors import EdgeDataError

COOC_QUERY = "cooc"  # the action: Flower message type "query.cooc"
COOC_ARRAYS = ("rows", "cols", "counts")


class EdgeWho(Protocol):
    """What the handler needs of an edge's identity (client_app.EdgeIdentity has it)."""

    @property
    def edge_id(self) -> str: ...
    @property
    def edge_index(self) -> int: ...
    @property
    def examples_dir(self) -> str: ...


def cooc_partition(examples_dir: str | Path, edge_id: str) -> Path:
    """features/cooc/edge_id=<id>: beside the edge's examples (the SuperNode's examples-dir)."""
    return Path(examples_dir).parent / "cooc" / f"edge_id={edge_id}"


def load_cooc(part: Path, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows int64, cols int64, counts float64) of one edge; a pair outside the catalog is an error."""
    if not part.exists():
        raise EdgeDataError(f"co-occurrence table {part} is missing; run `edgecache features` first")
    t = pq.read_table(part, columns=["prev_idx", "next_idx", "count"])
    rows, cols = (t[c].to_numpy().astype(np.int64) for c in ("prev_idx", "next_idx"))
    counts = t["count"].to_numpy().astype(np.float64)
    bad = (rows < 0) | (rows >= n_items) | (cols < 0) | (cols >= n_items)
    if bad.any():
        raise EdgeDataError(f"{part}: {int(bad.sum())} pairs fall outside the catalog's {n_items} items; "
                            "features and catalog are from different runs")
    return rows, cols, counts


def cooc_content(part: Path, n_items: int, edge_index: int) -> RecordDict:
    """The reply: COO arrays and scalar metrics only (what the server's contract check accepts)."""
    rows, cols, counts = load_cooc(part, n_items)
    arrays = ArrayRecord({"rows": Array(rows), "cols": Array(cols), "counts": Array(counts)})
    metrics = MetricRecord({"pairs": int(rows.size), "total": float(counts.sum()), "edge-index": edge_index})
    return RecordDict({"arrays": arrays, "metrics": metrics})


def add_cooc_query(app: ClientApp, identify: Callable[[Context], EdgeWho]) -> None:
    """Register the `query.cooc` handler on an edge's ClientApp (identify -> EdgeIdentity)."""

    @app.query(COOC_QUERY)
    def cooc(msg: Message, context: Context) -> Message:
        who = identify(context)
        n_items = int(msg.content.config_records["config"]["n-items"])  # type: ignore[arg-type]
        part = cooc_partition(who.examples_dir, who.edge_id)
        return Message(content=cooc_content(part, n_items, who.edge_index), reply_to=msg)

"""Per-edge log files: events rendered to JSON Lines (or Parquet) without a per-row json.dumps.

Lines are assembled column-wise with Arrow's string kernels: ids and devices by `take` from
small lookup arrays, timestamps from a per-day date and a per-second time-of-day lookup,
then one element-wise join with the JSON punctuation. The joined array's data buffer is
exactly the file's bytes. Each call writes the next `part-<nnnnn>` of every edge it touches.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FIELDS = ("user_id", "device", "content_id", "duration", "timestamp", "edge_id")
UNQUOTED = {"duration"}


def render_jsonl(cols: dict[str, pa.Array], omit: str | None = None, broken: bool = False) -> pa.Array:
    """One JSON line (with its newline) per row; `omit` drops a field, `broken` cuts the closing."""
    pieces: list[object] = []
    literal = "{"
    for name in FIELDS:
        if name == omit:
            continue
        quote = "" if name in UNQUOTED else '"'
        literal += ("" if literal == "{" else ", ") + f'"{name}": {quote}'
        pieces += [literal, cols[name]]
        literal = quote
    pieces.append("\n" if broken else literal + "}\n")
    out = pc.binary_join_element_wise(*pieces, "")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def string_bytes(lines: pa.Array) -> memoryview:
    """The concatenated bytes of a string array (zero-copy view of its data buffer)."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    if data is None:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]):int(offsets[-1])]


class Lookups:
    """Small string tables the renderer takes from: ids, devices, dates, times of day."""

    def __init__(self, user_id: np.ndarray, content_id: np.ndarray, devices: tuple[str, ...],
                 edges: list[str], start_date: str, days: int) -> None:
        self.user_id = pa.array(user_id, pa.string())
        self.content_id = pa.array(content_id, pa.string())
        self.device = pa.array(list(devices), pa.string())
        self.edge = pa.array(edges, pa.string())
        start = datetime.date.fromisoformat(start_date)
        self.date = pa.array([(start + datetime.timedelta(days=d)).isoformat() for d in range(days + 1)])
        self.tod = pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)])

    def columns(self, user: np.ndarray, device: np.ndarray, item: np.ndarray, duration: np.ndarray,
                ts: np.ndarray, edge: np.ndarray) -> dict[str, pa.Array]:
        """The six event columns as Arrow strings (duration as its JSON number text)."""
        stamp = pc.binary_join_element_wise(self.date.take(ts // 86400), self.tod.take(ts % 86400), " ")
        return {"user_id": self.user_id.take(user), "device": self.device.take(device),
                "content_id": self.content_id.take(item), "duration": pc.cast(pa.array(duration), pa.string()),
                "timestamp": stamp, "edge_id": self.edge.take(edge)}


class PartWriter:
    """Writes the next part file of each edge; remembers how many parts each edge has."""

    def __init__(self, logs: Path, edges: list[str], fmt: str) -> None:
        self.logs, self.edges, self.fmt = logs, edges, fmt
        self.parts = dict.fromkeys(edges, 0)

    def _next(self, edge: str) -> Path:
        folder = self.logs / f"edge={edge}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{self.parts[edge]:05d}.{self.fmt}"
        self.parts[edge] += 1
        return path

    def write_lines(self, edge_idx: np.ndarray, lines: pa.Array) -> None:
        """`lines` grouped by edge (edge_idx sorted): one part per edge present."""
        for e, lo, hi in key_runs(edge_idx):
            with self._next(self.edges[e]).open("wb") as f:
                f.write(string_bytes(lines.slice(lo, hi - lo)))

    def write_table(self, edge_idx: np.ndarray, table: pa.Table) -> None:
        """Parquet variant of write_lines (same columns, duration as int64)."""
        for e, lo, hi in key_runs(edge_idx):
            pq.write_table(table.slice(lo, hi - lo), self._next(self.edges[e]))


def key_runs(sorted_keys: np.ndarray) -> list[tuple[int, int, int]]:
    """(key, start, stop) of each run of equal keys in a sorted array."""
    if len(sorted_keys) == 0:
        return []
    cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.r_[0, cuts]
    stops = np.r_[cuts, len(sorted_keys)]
    return [(int(sorted_keys[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]

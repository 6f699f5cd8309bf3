"""`edgecache ingest`: a real trace in place of the generator, same run-directory layout.

Formats:
- jsonl: one JSON object per line; csv: a header row, then one record per line (the header
  is not counted as an input line). Fields are mapped with `--map ours=theirs,...`
  (workload.ingest_map); ours are user_id, content_id, timestamp (required), device,
  duration, edge_id (optional). Timestamps: "YYYY-MM-DD HH:MM:SS", ISO 8601 (an offset is
  converted to UTC) or epoch seconds. Missing device -> "web"; a device must be one of
  TV, mobile, tablet, web, console (any case). Missing duration -> the default runtime
  (100 min). Missing edge_id -> edge-NN with NN = crc32(user_id) mod workload.edges;
  given edge names are mapped, sorted, to edge-00, edge-01, ... (the map is in the output).
- movielens: see simulation/workload/movielens.py (100K: zip-code region -> edge; latest releases
  with ratings.csv: edge-NN = crc32(str(userId)) mod workload.edges).
Every malformed input line is quarantined with its reason in quarantine/ingest/ and
counted: input lines = ingested + quarantined, per file.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_nodes.devices import DEVICES
from simulation.errors import ConfigError, EdgecacheError
from simulation.workload.trace import (
    DEFAULT_RUNTIME_MIN,
    TestDays,
    Trace,
    check_epoch,
    check_text,
    write_trace,
)

log = logging.getLogger(__name__)

REQUIRED = ("user_id", "content_id", "timestamp")
OPTIONAL = ("device", "duration", "edge_id")
DEVICE_BY_LOWER = {d.lower(): d for d in DEVICES}
MAX_DURATION_MIN = 2**31 - 1  # the logs' integer column; absurd but representable ones go to Spark's check


def parse_mapping(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`ours=theirs` pairs (comma-separated or repeated) -> {ours: theirs}; identity by default."""
    mapping = {f: f for f in REQUIRED + OPTIONAL}
    for item in (p for chunk in items for p in chunk.split(",") if p.strip()):
        ours, sep, theirs = item.partition("=")
        ours = ours.strip()
        if not sep or ours not in mapping or not theirs.strip():
            raise ConfigError(f"--map {item!r}: expected ours=theirs with ours one of "
                              f"{', '.join(REQUIRED + OPTIONAL)} (e.g. --map user_id=uid)")
        mapping[ours] = theirs.strip()
    return mapping


def parse_timestamp(value: Any) -> int:
    """Epoch seconds (UTC) from a timestamp string, an ISO 8601 string or epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        return int(float(value))
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    t = datetime.datetime.fromisoformat(value.strip())
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp())


def record_event(rec: dict[str, Any], mapping: dict[str, str], n_edges: int) -> tuple[str, str, str, int | None, int, str]:
    """(user, content, device, duration or None, epoch s, edge name) from one record; ValueError says why not."""
    missing = [f for f in REQUIRED if rec.get(mapping[f]) in (None, "")]
    if missing:
        raise ValueError(f"missing field {', '.join(mapping[f] for f in missing)}")
    user = check_text("user_id", str(rec[mapping["user_id"]]))
    content = check_text("content_id", str(rec[mapping["content_id"]]))
    try:
        ts = check_epoch(parse_timestamp(rec[mapping["timestamp"]]))
    except (ValueError, OverflowError) as e:
        raise ValueError(f"bad timestamp {_short(rec[mapping['timestamp']])}") from e
    raw_device = rec.get(mapping["device"])
    device = DEVICE_BY_LOWER.get(str(raw_device).lower()) if raw_device not in (None, "") else "web"
    if device is None:
        raise ValueError(f"unknown device {_short(raw_device)} (allowed: {', '.join(DEVICES)})")
    duration = _duration(rec.get(mapping["duration"]))
    edge = rec.get(mapping["edge_id"])
    if edge in (None, ""):
        edge = f"edge-{zlib.crc32(user.encode()) % n_edges:02d}"
    return user, content, device, duration, ts, check_text("edge_id", str(edge))


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: a reason must stay readable beside a huge line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _duration(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        minutes = float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"non-numeric duration {_short(value)}") from e
    if isinstance(value, bool) or not math.isfinite(minutes) or not 0 <= minutes < MAX_DURATION_MIN:
        raise ValueError(f"negative or invalid duration {_short(value)}")
    return int(round(minutes))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text): a leading BOM dropped, invalid UTF-8 replaced, CR, LF or CRLF ends a line."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        for n, line in enumerate(f, 1):
            yield n, line.rstrip("\r\n")


def read_jsonl(path: Path, mapping: dict[str, str], n_edges: int, trace: Trace) -> None:
    """Add every line of a JSON Lines file to the trace (or its quarantine)."""
    for n, raw in _lines(path):
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            trace.add(path.name, *record_event(rec, mapping, n_edges))
        except json.JSONDecodeError as e:
            trace.reject(path.name, n, raw, f"broken JSON ({e.msg})")
        except ValueError as e:
            trace.reject(path.name, n, raw, str(e))
        except RecursionError:
            trace.reject(path.name, n, raw, "broken JSON (nested too deeply)")


def read_csv(path: Path, mapping: dict[str, str], n_edges: int, trace: Trace) -> None:
    """Add every data line of a CSV file (header first) to the trace (or its quarantine)."""
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise EdgecacheError(f"{path} is empty; a CSV trace needs a header row")
    try:
        header = next(csv.reader([first[1]]))
    except csv.Error as e:
        raise EdgecacheError(f"{path}: the header row is not CSV ({e})") from e
    absent = [mapping[f] for f in REQUIRED if mapping[f] not in header]
    if absent:
        raise ConfigError(f"{path}: column(s) {', '.join(absent)} not in the header ({', '.join(header)}); "
                          f"map them with --map, e.g. --map user_id={header[0]}")
    for n, raw in lines:
        try:
            fields = next(csv.reader([raw]), [])
        except csv.Error as e:  # a NUL byte, a field above csv.field_size_limit()
            trace.reject(path.name, n, raw, f"unreadable CSV line ({e})")
            continue
        if len(fields) != len(header):
            trace.reject(path.name, n, raw, f"expected {len(header)} fields, got {len(fields)}")
            continue
        try:
            trace.add(path.name, *record_event(dict(zip(header, fields, strict=True)), mapping, n_edges))
        except ValueError as e:
            trace.reject(path.name, n, raw, str(e))


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in suffixes)
        if not files:
            raise EdgecacheError(f"{path} holds no {'/'.join(suffixes)} files")
        return files
    if not path.is_file():
        raise EdgecacheError(f"trace {path} not found; pass a file or a folder")
    return [path]


def ingest(path: Path, trace_format: str, out: Path, *, mapping: dict[str, str] | None = None,
           n_edges: int = 8, fmt: str = "jsonl", test_days: TestDays = 0) -> dict[str, Any]:
    """Read a jsonl/csv/movielens trace and write logs, catalog, users and quarantine under `out`."""
    trace = Trace()
    if trace_format == "movielens":
        from simulation.workload.movielens import read_movielens
        catalog, users = read_movielens(path, trace, n_edges)
        return {**write_trace(trace, out, fmt=fmt, catalog=catalog, users=users, test_days=test_days),
                "trace": path.name}
    readers = {"jsonl": (read_jsonl, (".jsonl", ".json", ".ndjson")), "csv": (read_csv, (".csv",))}
    if trace_format not in readers:
        raise ConfigError(f"ingest format {trace_format!r} is not supported; choose jsonl, csv or movielens")
    reader, suffixes = readers[trace_format]
    for file in _files(path, suffixes):
        reader(file, mapping or parse_mapping(()), n_edges, trace)
    log.info("ingest: %d events, %d quarantined lines", trace.events, trace.quarantined)
    return {**write_trace(trace, out, fmt=fmt, catalog=None, users=None, test_days=test_days), "trace": path.name}


__all__ = ["DEFAULT_RUNTIME_MIN", "ingest", "parse_mapping", "parse_timestamp"]

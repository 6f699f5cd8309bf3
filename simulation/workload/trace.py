"""A real trace being ingested: accepted events, quarantined lines, and writing the run layout.

Edge names already of the form `edge-NN` are kept (so a documented rule such as MovieLens'
zip regions keeps its numbering); any other names are mapped, sorted, to edge-00, edge-01...
Events are written per edge in time order (ties keep input order); a missing duration is
the item's runtime; items without a catalog get one built from their ids (runtime 100 min,
25 MB per minute).
"""

from __future__ import annotations

import collections
import datetime
import json
import re
import shutil
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edge_nodes.devices import DEVICES
from simulation.workload.logwriter import Lookups, PartWriter, key_runs, render_jsonl
from simulation.workload.stats import WorkloadStats

TestDays = int | Callable[[int], int]  # the test period's days, or the rule giving them for a span

DEFAULT_RUNTIME_MIN = 100
MB_PER_MIN = 25.0
EDGE_NAME = re.compile(r"edge-\d{2,}")
# Timestamps a trace may hold: the Unix epoch to the end of year 9999 (what dates can render).
MAX_EPOCH_S = 253_402_300_799


def check_epoch(ts: int) -> int:
    """`ts` when it is a representable event time, else ValueError (the line is quarantined)."""
    if not 0 <= ts <= MAX_EPOCH_S:
        raise ValueError(f"timestamp {ts} out of range (want 1970-01-01 .. 9999-12-31)")
    return ts


def check_text(name: str, value: str) -> str:
    """`value` when it can be written as UTF-8 (a JSON escape can smuggle in a lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid Unicode ({e.reason})") from e
    return value


class Trace:
    """Accepted events and quarantined lines, counted per input file.

    Events are kept as columns of integer codes in chunks (about 30 bytes an event), each id
    once in a vocabulary (`vocab`, codes in arrival order; `write_trace` sorts): Python lists of a
    string and an int per field cost ~200 bytes an event, 0.4 GB for 2M ratings.
    """

    BUFFER = 1 << 16  # events `add` collects before coding them into a chunk

    def __init__(self) -> None:
        self.vocab: dict[str, dict[str, int]] = {k: {} for k in ("user", "content", "device", "edge")}
        self._chunks: list[tuple[np.ndarray, ...]] = []  # user, content, device, edge, duration, ts
        self._buffer: list[tuple[str, str, str, int, int, str]] = []
        self.rejected: list[dict[str, Any]] = []
        self.files: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def add(self, file: str, user: str, content: str, device: str, duration: int | None, ts: int,
            edge: str) -> None:
        """Accept one event (duration None = the item's runtime)."""
        self._buffer.append((user, content, device, -1 if duration is None else duration, ts, edge))
        self.files[file].update(lines=1, ingested=1)
        if len(self._buffer) >= self.BUFFER:
            self._flush()

    def extend(self, file: str, users: tuple[list[str], np.ndarray], contents: tuple[list[str], np.ndarray],
               device: str, durations: np.ndarray, ts: np.ndarray, edges: tuple[list[str], np.ndarray]) -> None:
        """Accept many events of one device at once, in the given order (same meaning as `add`):
        users, contents and edges as (their distinct ids, each event's index into them)."""
        self._flush()
        n = len(ts)
        self._chunks.append((self._code("user", *users), self._code("content", *contents),
                             np.full(n, self._code("device", [device], np.zeros(1, np.int64))[0], np.int32),
                             self._code("edge", *edges), np.asarray(durations, np.int64),
                             np.asarray(ts, np.int64)))
        self.files[file].update(lines=n, ingested=n)

    def _code(self, kind: str, ids: list[str], index: np.ndarray) -> np.ndarray:
        """The vocabulary codes of ids[index], adding the ids it uses to the vocabulary."""
        vocab, index = self.vocab[kind], np.asarray(index, np.int64)
        codes = np.full(len(ids), -1, np.int32)
        for k in np.unique(index).tolist():  # an id no event uses stays out (no user without events)
            codes[k] = vocab.setdefault(ids[k], len(vocab))
        return codes[index]

    def _flush(self) -> None:
        if not self._buffer:
            return
        user, content, device, duration, ts, edge = zip(*self._buffer, strict=True)
        self._buffer = []
        coded = [self._code(kind, *distinct_index(values))
                 for kind, values in (("user", user), ("content", content), ("device", device), ("edge", edge))]
        self._chunks.append((*coded, np.asarray(duration, np.int64), np.asarray(ts, np.int64)))

    def columns(self) -> tuple[np.ndarray, ...]:
        """Every accepted event in input order: user, content, device, edge (vocabulary codes),
        duration (-1 = the item's runtime) and ts (Unix seconds)."""
        self._flush()
        if not self._chunks:
            return tuple(np.zeros(0, np.int64) for _ in range(6))
        if len(self._chunks) > 1:
            self._chunks = [tuple(np.concatenate(c) for c in zip(*self._chunks, strict=True))]
        return self._chunks[0]

    @property
    def events(self) -> int:
        return sum(len(c[5]) for c in self._chunks) + len(self._buffer)

    def content_ids(self) -> list[str]:
        """The distinct content ids of the accepted events."""
        self._flush()
        return list(self.vocab["content"])

    def first_ts(self) -> int | None:
        """The earliest accepted event's Unix time (None: no event)."""
        ts = self.columns()[5]
        return int(ts.min()) if ts.size else None

    def reject(self, file: str, line: int, raw: str, reason: str) -> None:
        """Quarantine one input line with the reason it was not ingested."""
        self.rejected.append({"file": file, "line": line, "raw": raw, "reason": reason})
        self.files[file].update(lines=1, quarantined=1)

    def count(self, file: str, **counts: int) -> None:
        """Count lines of auxiliary files (e.g. MovieLens u.user) that were accepted."""
        self.files[file].update(lines=sum(counts.values()), **counts)

    @property
    def quarantined(self) -> int:
        return len(self.rejected)


def distinct_index(values: Sequence[Hashable]) -> tuple[list[Any], np.ndarray]:
    """(distinct values in first-seen order, each value's index into them)."""
    first: dict[Hashable, int] = {}
    index = np.fromiter((first.setdefault(v, len(first)) for v in values), np.int64, len(values))
    return list(first), index


def default_catalog(content_ids: list[str]) -> pa.Table:
    """A catalog for a trace that has none: one movie per distinct content id, sorted."""
    n = len(content_ids)
    return pa.table({
        "content_id": pa.array(content_ids, pa.string()), "item_idx": pa.array(np.arange(n, dtype=np.int32)),
        "title": pa.array(content_ids, pa.string()), "genre": pa.array(["unknown"] * n, pa.string()),
        "kind": pa.array(["movie"] * n, pa.string()), "series_id": pa.nulls(n, pa.string()),
        "season": pa.nulls(n, pa.int32()), "episode": pa.nulls(n, pa.int32()),
        "runtime_min": pa.array(np.full(n, DEFAULT_RUNTIME_MIN, dtype=np.int32)),
        "size_mb": pa.array(np.full(n, DEFAULT_RUNTIME_MIN * MB_PER_MIN)),
        "release_day": pa.array(np.zeros(n, dtype=np.int32)),
    })


def _edge_names(names: list[str]) -> tuple[list[str], dict[str, str]]:
    distinct = sorted(set(names))
    if all(EDGE_NAME.fullmatch(n) for n in distinct):
        return distinct, {n: n for n in distinct}
    mapping = {n: f"edge-{i:02d}" for i, n in enumerate(distinct)}
    return sorted(mapping.values()), mapping


def _codes(values: list[str], vocabulary: list[str]) -> np.ndarray:
    index = {v: i for i, v in enumerate(vocabulary)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def write_trace(trace: Trace, out: Path, *, fmt: str, catalog: pa.Table | None, users: pa.Table | None,
                test_days: TestDays = 0) -> dict[str, Any]:
    """Write logs, catalog.parquet, users.parquet and quarantine/ingest/; return the summary
    (with train and test events when `test_days`, a count or a function of the span's days)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "logs").exists():
        shutil.rmtree(out / "logs")  # stale parts of an earlier run would mix with this trace
    _write_quarantine(trace, out / "quarantine" / "ingest")
    if not trace.events:
        raise _empty(trace)
    user_c, content_c, device_c, edge_c, duration_c, ts_abs = trace.columns()
    contents = list(trace.vocab["content"])
    catalog = catalog if catalog is not None else default_catalog(sorted(contents))
    cids = catalog.column("content_id").to_pylist()
    item = _codes(contents, cids)[content_c]
    user_ids = list(trace.vocab["user"])
    user_vocab = sorted(user_ids)
    user = _codes(user_ids, user_vocab)[user_c]
    edges, edge_map = _edge_names(list(trace.vocab["edge"]))
    edge = _codes([edge_map[e] for e in trace.vocab["edge"]], edges)[edge_c]
    device = _codes(list(trace.vocab["device"]), list(DEVICES))[device_c]
    start = datetime.datetime.fromtimestamp(int(ts_abs.min()), datetime.UTC).date()
    ts = ts_abs - int(datetime.datetime(start.year, start.month, start.day, tzinfo=datetime.UTC).timestamp())
    days = int(ts.max() // 86400) + 1
    runtime = catalog.column("runtime_min").to_numpy()
    duration = np.where(duration_c < 0, runtime[item], duration_c)

    order = np.lexsort((ts, edge))
    # Trace ids are arbitrary text: escaped for the JSON renderer (a quote, backslash or newline
    # would break its line), and object arrays, since numpy's str dtype drops trailing NULs.
    text = (lambda v: [json.dumps(x)[1:-1] for x in v]) if fmt == "jsonl" else list
    lookups = Lookups(np.asarray(text(user_vocab), dtype=object), np.asarray(text(cids), dtype=object),
                      DEVICES, edges, start.isoformat(), days)
    writer = PartWriter(out / "logs", edges, fmt)
    for _, lo, hi in key_runs(edge[order]):  # one edge at a time: only its lines are rendered at once
        rows = order[lo:hi]
        cols = lookups.columns(user[rows], device[rows], item[rows], duration[rows], ts[rows], edge[rows])
        if fmt == "jsonl":
            writer.write_lines(edge[rows], render_jsonl(cols))
        else:
            cols["duration"] = pa.array(duration[rows].astype(np.int64))
            writer.write_table(edge[rows], pa.table(cols))
    pq.write_table(catalog, out / "catalog.parquet")
    pq.write_table(_users_table(users, user_vocab, user, edge, device, item, edges, catalog), out / "users.parquet")
    tdays = min(days, test_days(days) if callable(test_days) else test_days)
    return _summary(trace, edges, edge_map, user, item, edge, ts, catalog, start, days, tdays)


def _empty(trace: Trace) -> Exception:
    from simulation.errors import EdgecacheError
    reasons = collections.Counter(r["reason"] for r in trace.rejected).most_common(3)
    return EdgecacheError(f"no event could be ingested ({trace.quarantined} lines quarantined; most common "
                          f"reasons: {reasons}); check --format and --map")


def _write_quarantine(trace: Trace, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "part-00000.jsonl").open("w") as f:
        for row in trace.rejected:  # malformed lines only: few, and each must be kept verbatim
            f.write(json.dumps(row) + "\n")


def _users_table(users: pa.Table | None, vocab: list[str], user: np.ndarray, edge: np.ndarray,
                 device: np.ndarray, item: np.ndarray, edges: list[str], catalog: pa.Table) -> pa.Table:
    """users.parquet: given rows (MovieLens) or built from the events; top_genre from what they watched."""
    genres = np.asarray(catalog.column("genre").to_pylist(), dtype=object)
    g_vocab = sorted(set(genres))
    g_item = _codes(list(genres), g_vocab)

    def mode(codes: np.ndarray, width: int) -> np.ndarray:
        m = np.zeros((len(vocab), width), dtype=np.int64)
        np.add.at(m, (user, codes), 1)
        return np.argmax(m, axis=1)

    top_genre = np.asarray(g_vocab, dtype=object)[mode(g_item[item], len(g_vocab))]
    if users is not None:
        ids = users.column("user_id").to_pylist()
        where = {u: i for i, u in enumerate(vocab)}
        top = [top_genre[where[u]] if u in where else "unknown" for u in ids]
        return users.append_column("top_genre", pa.array(top, pa.string()))
    return pa.table({
        "user_id": pa.array(vocab, pa.string()), "name": pa.array(vocab, pa.string()),
        "home_edge": pa.array(np.asarray(edges)[mode(edge, len(edges))], pa.string()),
        "age": pa.nulls(len(vocab), pa.int32()),
        "preferred_device": pa.array(np.asarray(DEVICES)[mode(device, len(DEVICES))], pa.string()),
        "top_genre": pa.array(top_genre, pa.string()),
    })


def _reason_kind(reason: str) -> str:
    """A reason without its specifics ("unknown user 9 (not in u.user)" -> "unknown user")."""
    return re.sub(r" -?\d+\b", "", re.sub(r" ?[('\"].*$", "", reason))


def _summary(trace: Trace, edges: list[str], edge_map: dict[str, str], user: np.ndarray, item: np.ndarray,
             edge: np.ndarray, ts: np.ndarray, catalog: pa.Table, start: datetime.date, days: int,
             test_days: int) -> dict[str, Any]:
    order = np.lexsort((ts, user))
    u, i = user[order], item[order]
    series = np.asarray(catalog.column("series_id").to_pylist(), dtype=object)
    cont = np.r_[False, (u[1:] == u[:-1]) & (i[1:] == i[:-1] + 1)]
    cont[1:] &= (series[i[1:]] != None) & (series[i[1:]] == series[i[:-1]])  # noqa: E711 (elementwise)
    stats = WorkloadStats(edges, catalog.num_rows, (days - test_days) * 86400, ())
    stats.add(edge[order], i, ts[order], cont)
    s = stats.summary()
    s.pop("dirty_injected")
    s.pop("lines")
    if not test_days:
        s.pop("train_events"), s.pop("test_events")
    reasons = collections.Counter(_reason_kind(r["reason"]) for r in trace.rejected)
    s.update(source="ingest", users=int(len(np.unique(user))), items=catalog.num_rows, edges=len(edges),
             edge_map=edge_map, start_date=start.isoformat(), days=days, ingest_quarantined=trace.quarantined,
             quarantine_reasons=dict(sorted(reasons.items())),
             input_files={f: {k: c[k] for k in ("lines", "ingested", "quarantined")} for f, c in trace.files.items()})
    return s

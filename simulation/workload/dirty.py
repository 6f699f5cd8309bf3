"""Dirty-data injection: malformed copies of real rows, to exercise the pipeline's quarantine.

`workload.dirty_fraction` x events extra lines are added (the clean events stay exactly
`workload.events`). Each dirty line is a corrupted copy of a clean row and is written right
after it, in the same edge file. Kinds are dealt round-robin over the whole run, so every
kind appears once there are at least as many dirty lines as kinds; the exact count of
each kind, overall and per edge, goes to results.json `workload.dirty_injected`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulation.workload.logwriter import render_jsonl

JSONL_KINDS = ("broken_json", "missing_field", "negative_duration", "non_numeric_duration",
               "unknown_device", "bad_timestamp", "unknown_content", "duplicate")
# Typed Parquet columns cannot hold broken JSON or a text duration.
PARQUET_KINDS = tuple(k for k in JSONL_KINDS if k not in ("broken_json", "non_numeric_duration"))
DROPPABLE = ("user_id", "device", "content_id", "duration", "timestamp")
BAD_DEVICES = ("smartwatch", "VR-headset", "fridge", "")
BAD_STAMPS = ("not-a-date", "2025-13-45 25:61:00", "12/04/2025 22:30", "")


@dataclass
class DirtyRows:
    """Dirty copies: their source row, kind, (possibly null) columns and broken-JSON flag."""

    src: np.ndarray
    kind: np.ndarray
    cols: dict[str, pa.Array]
    omit: np.ndarray       # index into DROPPABLE of the dropped field, -1 = none


def dirty_target(total_dirty: int, emitted_so_far: int, total_events: int, injected_so_far: int) -> int:
    """Dirty lines due for this chunk so the run ends with exactly total_dirty."""
    return int(round(total_dirty * emitted_so_far / max(total_events, 1))) - injected_so_far


def make_dirty(cols: dict[str, pa.Array], k: int, kinds: tuple[str, ...], first_kind: int,
               n_items: int, rng: np.random.Generator) -> DirtyRows:
    """k corrupted copies of random rows of `cols` (clean event columns as strings)."""
    n = len(cols["user_id"])
    k = min(k, n)
    src = np.sort(rng.choice(n, size=k, replace=False))
    kind = rng.permutation((first_kind + np.arange(k)) % len(kinds))
    names = np.asarray(kinds)[kind]
    out = {name: arr.take(src) for name, arr in cols.items()}
    omit = np.full(k, -1)
    sel = names == "missing_field"
    omit[sel] = rng.integers(0, len(DROPPABLE), int(sel.sum()))
    dur = out["duration"]
    out["duration"] = _replace(dur, names == "negative_duration", pc.binary_join_element_wise("-", dur, ""))
    text = pc.if_else(pa.array(rng.random(k) < 0.5), pc.binary_join_element_wise('"', dur, ' min"', ""),
                      pa.scalar('"n/a"'))
    out["duration"] = _replace(out["duration"], names == "non_numeric_duration", text)
    out["device"] = _replace(out["device"], names == "unknown_device", _pick(BAD_DEVICES, k, rng))
    out["timestamp"] = _replace(out["timestamp"], names == "bad_timestamp", _pick(BAD_STAMPS, k, rng))
    beyond = pc.cast(pa.array(n_items + 1 + rng.integers(0, 1000, k)), pa.string())
    unknown = pc.binary_join_element_wise("C", pc.utf8_lpad(beyond, 5, "0"), "")  # ids past the catalog
    out["content_id"] = _replace(out["content_id"], names == "unknown_content", unknown)
    return DirtyRows(src=src, kind=kind, cols=out, omit=omit)


def _pick(values: tuple[str, ...], k: int, rng: np.random.Generator) -> pa.Array:
    return pa.array(np.asarray(values)[rng.integers(0, len(values), k)], pa.string())


def _replace(arr: pa.Array, mask: np.ndarray, new: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask, pa.bool_()), new, arr)


def render_dirty_jsonl(d: DirtyRows, kinds: tuple[str, ...]) -> pa.Array:
    """The dirty rows as JSON lines, in their own order (grouped rendering, then reassembled)."""
    broken = np.asarray(kinds)[d.kind] == "broken_json" if len(d.kind) else np.zeros(0, bool)
    lines = np.empty(len(d.src), dtype=object)
    for omit in range(-1, len(DROPPABLE)):  # a handful of templates, each rendered vectorized
        for cut in (False, True):
            sel = np.flatnonzero((d.omit == omit) & (broken == cut))
            if len(sel):
                part = {k: v.take(sel) for k, v in d.cols.items()}
                field = DROPPABLE[omit] if omit >= 0 else None
                lines[sel] = render_jsonl(part, omit=field, broken=cut).to_numpy(zero_copy_only=False)
    return pa.array(lines, pa.string())


def dirty_table(d: DirtyRows) -> pa.Table:
    """The dirty rows as typed Parquet columns: a dropped field is null, duration an int."""
    cols = dict(d.cols)
    for i, name in enumerate(DROPPABLE):
        mask = pa.array(d.omit == i, pa.bool_())
        cols[name] = pc.if_else(mask, pa.scalar(None, cols[name].type), cols[name])
    cols["duration"] = pc.cast(cols["duration"], pa.int64())
    return pa.table(cols)

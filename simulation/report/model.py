"""The report's document model: sections of paragraphs, tables, figures and notes.

Section builders turn results.json into these plain values; `report_html` and `report_md`
render the same values, so the HTML page and the Markdown file always carry the same tables.
Cells are formatted here once, so both renderings show identical numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """A table of preformatted cells; `marks` holds an optional CSS class per row."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figure:
    """A PNG image with its alternative text (embedded as a data URI in HTML)."""

    name: str
    png: bytes
    alt: str


@dataclass(frozen=True)
class Note:
    """An explicit remark, e.g. that a section is not in this run."""

    text: str


@dataclass(frozen=True)
class Details:
    """A collapsible block (HTML `<details>`) holding a table, e.g. the full config."""

    summary: str
    table: Table


Block = str | Table | Figure | Note | Details


@dataclass(frozen=True)
class Section:
    """One titled part of a report, with an anchor id."""

    id: str
    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


NUMERIC = re.compile(r"^[+-]?[\d,.]+(e[+-]?\d+)?( ?(%|pp|s|B|kB|MB|GB|TB))?( \([+-][\d.]+ pp\))?$")


def numeric_columns(t: Table) -> tuple[bool, ...]:
    """Per column: True when every filled cell looks like a number (right-aligned)."""
    cols = []
    for i in range(len(t.headers)):
        cells = [row[i] for row in t.rows if i < len(row) and row[i] not in ("—", "")]
        cols.append(i > 0 and bool(cells) and all(NUMERIC.match(c) for c in cells))
    return tuple(cols)


def not_in_run(what: str, why: str = "") -> Note:
    """The standard note for a section whose data is absent from results.json."""
    return Note(f"{what}: not in this run." + (f" {why}" if why else ""))


def is_number(value: Any) -> bool:
    """True for finite ints and floats (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt_ratio(value: Any) -> str:
    """A ratio in [0, 1] as a three-decimal number; '—' when absent."""
    return f"{value:.3f}" if is_number(value) else "—"


def fmt_delta(value: Any) -> str:
    """A signed difference of ratios, in percentage points."""
    return f"{value * 100:+.1f} pp" if is_number(value) else "—"


def fmt_int(value: Any) -> str:
    """An integer with thousands separators (a non-integral number keeps four digits)."""
    if not is_number(value):
        return "—"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"


def fmt_bytes(value: Any) -> str:
    """Bytes in decimal units (the catalog sizes are MB)."""
    if not is_number(value):
        return "—"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def fmt_seconds(value: Any) -> str:
    """Seconds with one decimal."""
    return f"{value:.1f} s" if is_number(value) else "—"


def fmt_value(value: Any) -> str:
    """Any config or free-form value, compactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value) if value else "(none)"
    if value is None or value == "":
        return "(empty)"
    return str(value)

"""Render report sections as one self-contained HTML page.

Inline CSS, images as base64 PNG data URIs, no scripts, no external URLs: the file can be
mailed or archived and still reads the same. Used by report, compare and sweep pages.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from simulation.report.model import Block, Details, Figure, Note, Section, Table, numeric_columns

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9;line-height:1.45}
header{background:#1d2b44;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:1.5em} header p{margin:4px 0 0;color:#c9d3e6}
header code{background:#34486b;color:#fff}
nav{padding:8px 32px;background:#e8ecf3;font-size:.9em}
nav a{margin-right:14px;color:#1d2b44;text-decoration:none}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:6px 20px 14px;margin:16px 0}
h2{font-size:1.2em;border-bottom:1px solid #e3e7ee;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0;font-size:.88em}
p.cap{color:#555;margin:12px 0 2px;font-size:.88em}
th,td{border:1px solid #dde2ea;padding:3px 7px;text-align:left;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal;min-width:24em}
th{background:#eef1f6} .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.best td{background:#e3f4e1;font-weight:600} tr.bound td{background:#eeeeee;font-style:italic}
tr.focus td{background:#fdecea}
.note{background:#fff8e1;border-left:4px solid #f0b429;padding:6px 10px;margin:8px 0}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
details{margin:8px 0} summary{cursor:pointer;color:#1d2b44}
code{background:#eef1f6;padding:0 3px;border-radius:3px}
.scroll{overflow-x:auto}
"""


def _text(s: str) -> str:
    """Escape, then show `backticked` words as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s))


def _num(numeric: tuple[bool, ...], i: int) -> str:
    return ' class="num"' if i < len(numeric) and numeric[i] else ""


def _wrap(cell: str) -> str:
    return ' class="wrap"' if len(cell) > 60 else ""


def table_html(t: Table) -> str:
    """A table with optional caption and per-row classes."""
    num = numeric_columns(t)
    head = "".join(f"<th{_num(num, i)}>{html.escape(h)}</th>" for i, h in enumerate(t.headers))
    rows = []
    for i, row in enumerate(t.rows):
        mark = t.marks[i] if i < len(t.marks) and t.marks[i] else ""
        cls = f' class="{mark}"' if mark else ""
        cells = "".join(f"<td{_num(num, i) or _wrap(c)}>{html.escape(c)}</td>" for i, c in enumerate(row))
        rows.append(f"<tr{cls}>{cells}</tr>")
    cap = f'<p class="cap">{_text(t.caption)}</p>' if t.caption else ""
    return (f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def figure_html(f: Figure) -> str:
    """An <img> whose source is the PNG itself."""
    data = base64.b64encode(f.png).decode("ascii")
    return f'<img id="fig-{html.escape(f.name)}" alt="{html.escape(f.alt)}" src="data:image/png;base64,{data}">'


def block_html(b: Block) -> str:
    """One block of a section."""
    if isinstance(b, Table):
        return table_html(b)
    if isinstance(b, Figure):
        return figure_html(b)
    if isinstance(b, Note):
        return f'<p class="note">{_text(b.text)}</p>'
    if isinstance(b, Details):
        return f"<details><summary>{_text(b.summary)}</summary>{table_html(b.table)}</details>"
    return f"<p>{_text(b)}</p>"


def section_html(s: Section) -> str:
    """A titled section with an anchor."""
    body = "\n".join(block_html(b) for b in s.blocks)
    return f'<section id="{html.escape(s.id)}">\n<h2>{html.escape(s.title)}</h2>\n{body}\n</section>'


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page: header, a table of contents, the sections."""
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(section_html(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{html.escape(title)}</h1><p>{_text(subtitle)}</p></header>\n"
            f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n")

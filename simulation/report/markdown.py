"""Render report sections as Markdown: the same tables as the HTML page, made for diffs.

Figures are not embedded (they would make diffs unreadable); each is named with a pointer to
the HTML page that carries it.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulation.report.model import Block, Details, Figure, Note, Section, Table, numeric_columns


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    """A GitHub-flavoured Markdown table, caption first."""
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric_columns(t)) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def block_md(b: Block, html_name: str) -> str:
    """One block of a section."""
    if isinstance(b, Table):
        return table_md(b)
    if isinstance(b, Figure):
        return f"*Figure: {b.alt} (see {html_name}).*"
    if isinstance(b, Note):
        return f"> **Note:** {b.text}"
    if isinstance(b, Details):
        return f"<details><summary>{b.summary}</summary>\n\n{table_md(b.table)}\n\n</details>"
    return b


def render_markdown(title: str, subtitle: str, sections: Sequence[Section],
                    html_name: str = "report.html") -> str:
    """The whole document."""
    parts = [f"# {title}", "", subtitle]
    for s in sections:
        parts += ["", f"## {s.title}", ""]
        parts.append("\n\n".join(block_md(b, html_name) for b in s.blocks))
    return "\n".join(parts) + "\n"

"""`edgecache compare`: policies x runs with deltas against the first run, terminal and HTML."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from simulation.errors import RunDirError
from simulation.report.compare import (
    edge_delta_table,
    load_runs,
    overall_table,
    print_comparison,
    write_compare_html,
)
from tests.fixtures_report import make_results, write_run
from tests.test_cli import edgecache


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    base = make_results(name="base")
    better = make_results(shift=0.02, name="better")
    better["config"]["cache"]["capacity"] = 100
    del better["policies"]["lfu"]["per_edge"]["edge-03"]
    return [write_run(tmp_path / "base", base), write_run(tmp_path / "better", better)]


def test_overall_table_shows_deltas_vs_first_run(two_runs: list[Path]) -> None:
    runs = load_runs(two_runs)
    table = overall_table(runs)
    assert table.headers == ("policy", "base", "better")
    assert ("federated", "0.380", "0.400 (+2.0 pp)") in table.rows


def test_per_edge_deltas_and_missing_edges(two_runs: list[Path]) -> None:
    base, better = load_runs(two_runs)
    table = edge_delta_table(base, better)
    assert table.headers == ("policy", "all edges", "edge-00", "edge-01", "edge-02", "edge-03")
    rows = {r[0]: r for r in table.rows}
    assert rows["federated"][1:] == ("+2.0 pp",) * 5
    assert rows["lfu"][-1] == "—"


def test_terminal_and_html_output(two_runs: list[Path], tmp_path: Path) -> None:
    runs = load_runs(two_runs)
    buf = io.StringIO()
    print_comparison(runs, Console(file=buf, width=160, color_system=None))
    text = buf.getvalue()
    assert "0.400 (+2.0 pp)" in text and "cache.capacity" in text and "better minus base" in text
    page = write_compare_html(runs, tmp_path / "out").read_text()
    assert "0.400 (+2.0 pp)" in page and 'id="fig-compare_overall"' in page
    assert not re.search(r"https?://|<script|<link", page)
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', page))


def test_compare_needs_two_runs(two_runs: list[Path]) -> None:
    with pytest.raises(RunDirError, match="two or more"):
        load_runs(two_runs[:1])


def test_cli_compare(two_runs: list[Path], tmp_path: Path) -> None:
    out = edgecache("compare", *map(str, two_runs), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "+2.0 pp" in out.stdout
    assert (tmp_path / "cmp" / "compare.html").is_file()

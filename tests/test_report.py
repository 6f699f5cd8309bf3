"""report.html / report.md from results.json alone: sections, embedded images, determinism."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from simulation.config import build_config
from simulation.errors import RunDirError
from simulation.pipeline import StageContext, load_stage
from simulation.report.policies import best_reactive, edge_verdicts, overall_verdict
from simulation.report.run_report import SECTION_IDS, render_report, write_report
from simulation.rundir import RunDir
from tests.fixtures_report import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def images(page: str) -> list[bytes]:
    """Every <img> source, decoded; fails on anything but a PNG data URI."""
    out = []
    for src in re.findall(r'<img[^>]*\bsrc="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,"), src[:60]
        out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


def md_rows(md: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line is `header`."""
    lines = md.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_every_section_is_present(report_run: Path) -> None:
    html_path, md_path = write_report(report_run)
    page, md = html_path.read_text(), md_path.read_text()
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in page
    for title in ("Configuration", "Workload", "Policies", "Per-edge hit ratio", "Hit ratio vs cache size",
                  "Federated training", "Static cache efficiency", "Failures and degraded spans",
                  "Timings by stage"):
        assert f"<h2>{title}</h2>" in page and f"## {title}" in md
    # workload numbers and quarantine reasons, failures and degraded spans, timings
    for text in ("15,000", "4,800", "bad_timestamp", "missing_user", "edge-02", "2025-04-05 10:05:00", "127.9 s",
                 "federated_personalized", "no personalized models"):
        assert text in page and text in md


def test_images_are_valid_embedded_pngs_and_nothing_is_external(report_run: Path) -> None:
    page = write_report(report_run)[0].read_text()
    pngs = images(page)
    assert len(pngs) == 4  # per-edge bars, origin trade-off, hit ratio over time, training curves
    for png in pngs:
        assert png.startswith(PNG_MAGIC) and b"Software" not in png
        img = Image.open(io.BytesIO(png))
        img.verify()
        assert img.size[0] >= 600 and img.size[1] >= 300
    assert not re.search(r"https?://|<script|<link|url\(|@import", page)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))


def test_policy_table_marks_best_reactive_and_belady(report_results: dict[str, Any]) -> None:
    page, md = render_report(report_results)
    assert best_reactive(report_results["policies"]) == "arc"
    assert '<tr class="best"><td>arc ★ best reactive</td>' in page
    assert '<tr class="bound"><td>belady (bound)</td>' in page
    assert "| arc ★ best reactive | reactive | 0.344 |" in md
    assert "| lru | reactive | 0.314 | 0.291 | 20,000 | 0 B | — |" in md  # no prefetch: no precision
    header = ("| policy | kind | hit ratio | byte hit ratio | requests | prefetch bytes | prefetch precision "
              "| origin bytes | mean ms | p99 ms |")
    assert header in md
    names = [row[0] for row in md_rows(md, header)]
    assert names[:2] == ["belady_prefetch (offline bound)", "belady (bound)"] and names[-1] == "lru"  # by hit ratio
    assert '<tr class="bound"><td>belady_prefetch (offline bound)</td><td>offline bound</td>' in page
    assert len(names) == 13


def test_verdict_says_where_federated_wins_and_loses(report_results: dict[str, Any]) -> None:
    policies = report_results["policies"]
    sentence = overall_verdict(policies)
    assert "wins against the best reactive policy (arc" in sentence and "below the offline bound belady" in sentence
    text, table = edge_verdicts(policies)
    assert "on 3 of 4 edges and loses on edge-02" in text and "exceeds belady on 0 of 4" in text
    assert table is not None
    assert ("edge-02", "0.370", "s3fifo", "0.390", "-2.0 pp", "loses", "0.480", "-11.0 pp") in table.rows


@pytest.mark.parametrize(("ratio", "says"), [(1.004, "fetching 0.4% more bytes from the origin than arc"),
                                             (0.9, "fetching 10.0% fewer bytes"),
                                             (1.0002, "fetching the same bytes from the origin as arc (within 0.05%")])
def test_verdict_gives_the_origin_cost_to_a_tenth_of_a_percent(report_results: dict[str, Any], ratio: float,
                                                                says: str) -> None:
    policies = json.loads(json.dumps(report_results["policies"]))
    policies["arc"]["overall"]["origin_bytes"] = 1_000_000
    policies["federated"]["overall"]["origin_bytes"] = round(1_000_000 * ratio)
    assert says in overall_verdict(policies)


def test_markdown_has_the_tables(report_run: Path) -> None:
    md = write_report(report_run)[1].read_text()
    assert "| policy | all edges | edge-00 | edge-01 | edge-02 | edge-03 |" in md
    assert "| federated | 0.380 | 0.400 | 0.360 | 0.370 | 0.390 |" in md
    assert "| round | train_loss | eval_hit_at_k |" in md
    assert "| ranking | all edges | edge-00 | edge-01 | edge-02 | edge-03 |" in md  # static efficiency
    assert "| popularity | 0.280 | 0.270 |" in md and "| oracle | 0.410 | 0.400 |" in md
    assert "'oracle' ranks by test-period frequency" in md
    assert "| reason | rows |" in md and "| stage | wall time |" in md
    assert "base64" not in md


def test_regenerates_from_results_json_alone_byte_identical(report_run: Path, tmp_path: Path) -> None:
    first_html, first_md = (p.read_bytes() for p in write_report(report_run))
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(report_run / "results.json", copy / "results.json")
    again_html, again_md = (p.read_bytes() for p in write_report(copy))
    assert again_html == first_html and again_md == first_md
    assert sorted(p.name for p in copy.iterdir()) == ["report.html", "report.md", "results.json"]


def test_capacity_curve_only_from_a_sweep(report_results: dict[str, Any]) -> None:
    page, md = render_report(report_results)
    assert "needs a sweep" in page and 'id="fig-capacity_sweep"' not in page
    report_results["capacity_sweep"] = {"capacities": [10, 20, 40], "unit": "items",
                                        "policies": {"lru": [0.1, 0.2, 0.3], "federated": [0.2, 0.3, 0.35]}}
    page, md = render_report(report_results)
    assert 'id="fig-capacity_sweep"' in page and "needs a sweep" not in page
    assert "| federated | 0.200 | 0.300 | 0.350 |" in md


@pytest.mark.parametrize("drop", ["federated", "policies", "workload", "static_efficiency", "degraded",
                                  "timings", "config"])
def test_missing_sections_say_so(report_results: dict[str, Any], drop: str) -> None:
    del report_results[drop]
    page, md = render_report(report_results)
    assert "not in this run" in page and "not in this run" in md


def test_empty_results_render_without_crashing() -> None:
    page, md = render_report({})
    assert page.count("not in this run") >= 8 and "<img" not in page


def test_missing_results_json_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="edgecache run"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(RunDirError, match="not valid JSON"):
        write_report(tmp_path)


def test_report_stage_writes_the_report_and_adds_nothing(tmp_path: Path, report_results: dict[str, Any]) -> None:
    run = RunDir(tmp_path / "r").create()
    ctx = StageContext(build_config({}), run, Console(file=io.StringIO()), report_results)
    assert load_stage("report")(ctx) == {}
    assert run.report_html.is_file() and run.report_md.is_file()


def test_cli_report(report_run: Path) -> None:
    from tests.test_cli import edgecache

    out = edgecache("report", str(report_run))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (report_run / "report.html").is_file()
    assert json.loads((report_run / "results.json").read_text())["policies"]


def test_deterministic_across_two_renders(tmp_path: Path, report_results: dict[str, Any]) -> None:
    a = write_report(write_run(tmp_path / "a", report_results))[0].read_bytes()
    b = write_report(write_run(tmp_path / "b", report_results))[0].read_bytes()
    assert a == b


def test_latency_columns_appear_only_when_reported(report_results: dict[str, Any]) -> None:
    for stats in report_results["policies"].values():
        del stats["overall"]["latency_mean_ms"], stats["overall"]["latency_p99_ms"]
    assert "mean ms" not in render_report(report_results)[1]
    for i, stats in enumerate(report_results["policies"].values()):
        stats["overall"].update(latency_mean_ms=20.0 + i, latency_p99_ms=80.5)
    md = render_report(report_results)[1]
    assert "| mean ms | p99 ms |" in md and "| 80.5 |" in md and "simulated request latency" in md


def test_another_process_writes_the_same_bytes(report_run: Path) -> None:
    from tests.test_cli import edgecache

    in_process = write_report(report_run)[0].read_bytes()
    (report_run / "report.html").unlink()
    out = edgecache("report", str(report_run))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (report_run / "report.html").read_bytes() == in_process


def test_quality_table_has_hit_ndcg_and_requests_labelled_with_the_trace() -> None:
    results = {"config": {"workload": {"source": "ingest", "ingest_path": "data/ml-latest-small", "days": 28}},
               "workload": {"source": "ingest", "trace": "ml-latest-small", "events": 100836, "days": 8215},
               "prediction_quality": {"k": 10, "note": "n",
                                      "federated": {"overall": {"hit_at_k": 0.128, "ndcg_at_k": 0.0712, "requests": 4000},
                                                    "per_edge": {"edge-00": {"hit_at_k": 0.1, "ndcg_at_k": 0.05,
                                                                             "requests": 1000}}},
                                      "popularity": {"overall": {"hit_at_k": 0.05, "requests": 4000},  # an older run
                                                     "per_edge": {}}}}
    page, md = render_report(results)
    assert "Trace: ingested trace ml-latest-small. hit@10 and NDCG@10" in md
    assert "| federated | 0.128 | 0.071 | 4,000 |" in md and "| popularity | 0.050 | — | 4,000 |" in md
    assert md.count("| workload.days |") == 1  # only in the full config: 28 days are not the trace's span
    assert "| trace | ingested trace ml-latest-small |" in md and "100,836 events of the ingested trace" in md


@pytest.mark.parametrize("refresh,says", [
    ({"every_days": 1.0, "status": "ok", "refreshes": 1642, "entries": 9},
     "re-summed every day of the test period (1,642 refreshes;"),
    ({"every_days": 2.5, "status": "ok", "refreshes": 3, "entries": 9}, "re-summed every 2.5 days of the test period"),
    ({"every_days": 0.0, "status": "off"}, "The co-occurrence counts stayed as at the cut (off)."),
])
def test_quality_section_says_how_the_counts_were_kept(refresh: dict[str, Any], says: str) -> None:
    results = {"prediction_quality": {"k": 10, "note": "n", "itemcf": {"overall": {"hit_at_k": 0.1}}},
               "analytics_refresh": refresh}
    assert says in render_report(results)[1]


def test_quality_section_says_when_the_counts_were_aged() -> None:
    results = {"prediction_quality": {"k": 10, "note": "n", "itemcf": {"overall": {"hit_at_k": 0.1}}},
               "analytics_refresh": {"every_days": 1.0, "status": "ok", "refreshes": 5, "entries": 9},
               "config": {"features": {"cooc_half_life_days": 1000.0}}}
    assert "aged with a half-life of 1000 days, re-aged at every refresh." in render_report(results)[1]
    results["analytics_refresh"] = {"every_days": 0.0, "status": "off"}
    assert "stayed as at the cut (off). Each count was aged with a half-life of 1000 days." in render_report(results)[1]
    results["config"]["features"]["cooc_half_life_days"] = 0.0
    assert "half-life" not in render_report(results)[1]


def test_generated_runs_are_labelled_generator(report_results: dict[str, Any]) -> None:
    page, md = render_report(report_results)
    assert "| trace | generator |" in md

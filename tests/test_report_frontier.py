"""The budget frontier: interpolation at the best reactive policy's origin traffic, the sentences, the pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulation.report.run_report import render_report
from simulation.report.sweep_page import write_sweep_report
from simulation.report.tradeoff import (
    at_reference,
    frontier_blocks,
    frontier_data,
    frontier_sentence,
    limit_sentence,
)
from tests.fixtures_report import make_results

# Two budgets' worth of hand-picked overall results (origin bytes in units of wtinylfu's 100).
BUDGET_SWEEP: dict[str, Any] = {
    "budgets": [0.0, 0.1, 1.0],
    "hit_ratio": {"lru": [0.50, 0.50, 0.50], "wtinylfu": [0.59, 0.59, 0.59], "belady": [0.70, 0.70, 0.70],
                  "federated": [0.62, 0.66, 0.70], "belady_prefetch": [0.70, 0.80, 0.99],
                  "popularity": [0.61, 0.615, 0.62]},
    "origin_bytes": {"lru": [120, 120, 120], "wtinylfu": [100, 100, 100], "belady": [72, 72, 72],
                     "federated": [90, 110, 140], "belady_prefetch": [72, 75, 80], "popularity": [93, 95, 97]},
}


def test_interpolates_where_the_curve_crosses_the_reference() -> None:
    best, ref, points, curves = frontier_data(BUDGET_SWEEP) or ("", 0.0, {}, {})
    assert (best, ref) == ("wtinylfu", 100.0)
    assert set(points) == {"lru", "wtinylfu", "belady"}
    # federated: 0.9x -> 0.62 at budget 0, 1.1x -> 0.66 at 0.1: at 1.0x, 0.64
    hit, b0, b1 = at_reference(curves["federated"]) or (0.0, 0.0, 0.0)
    assert round(hit, 6) == 0.64 and (b0, b1) == (0.0, 0.1)
    assert at_reference(curves["popularity"]) is None  # always below 1.0x


def test_sentences_say_interpolated_and_the_best_measured_point() -> None:
    _, _, _, curves = frontier_data(BUDGET_SWEEP) or ("", 0.0, {}, {})
    s = frontier_sentence("federated", curves["federated"], "wtinylfu", 0.59)
    assert s.startswith("At the origin traffic of the best reactive policy (wtinylfu, 59.0%), federated hits 64.0% "
                        "(+5.0 points; interpolated linearly on its budget curve between budgets 0 and 0.1)")
    assert "best measured point at or below that traffic is budget 0: 62.0% at 0.90x" in s
    s = frontier_sentence("popularity", curves["popularity"], "wtinylfu", 0.59)
    assert s == ("popularity stays below wtinylfu's origin traffic at every budget; its best measured point at or "
                 "below that traffic is budget 1: 62.0% at 0.97x.")
    never = frontier_sentence("x", [(1.2, 0.7, 0.0), (1.4, 0.8, 1.0)], "wtinylfu", 0.59)
    assert never == "x never gets down to wtinylfu's origin traffic: its lowest is 1.20x at budget 0 (70.0%)."


def test_the_report_says_how_origin_traffic_was_limited() -> None:
    on = {"config": {"cache": {"origin_shadow": "wtinylfu", "origin_ratio": 1.0, "price_gain": 30.0,
                               "prefetch_price": 0.8}}}
    assert limit_sentence(on).startswith("Each edge simulates a wtinylfu cache of the same capacity on its own "
                                         "requests (a shadow) and prefetches only while its origin bytes")
    assert "cache.price_gain 30, starting at cache.prefetch_price 0.8" in limit_sentence(on)
    on["config"]["cache"]["price_gain"] = 0.0
    assert "price_gain" not in limit_sentence(on)
    assert limit_sentence({"config": {"cache": {"origin_shadow": "none"}}}).startswith("No origin limit in this run")
    on["config"]["cache"]["origin_shadow"] = "best"
    assert "every reactive policy (lru, lfu, arc, s3fifo, wtinylfu)" in limit_sentence(on)


def test_run_report_and_sweep_page_carry_the_frontier(tmp_path: Path) -> None:
    results = make_results()
    results["budget_sweep"] = BUDGET_SWEEP
    page, md = render_report(results)
    assert 'id="fig-budget_frontier"' in page and "federated hits 64.0%" in md
    assert "belady_prefetch (offline bound) stays below wtinylfu's origin traffic at every budget" in md
    assert len(frontier_blocks({"budgets": [0.0], "hit_ratio": {}, "origin_bytes": {}})) == 1  # a note
    summary = {"key": "cache.prefetch_budget", "values": BUDGET_SWEEP["budgets"], "shared_stages": ["train"],
               "point_stages": ["replay", "report"],
               "points": [{"index": i, "value": b, "dir": f"point-{i}", "status": "ok",
                           "hit_ratio": {p: v[i] for p, v in BUDGET_SWEEP["hit_ratio"].items()}}
                          for i, b in enumerate(BUDGET_SWEEP["budgets"])],
               "curves": {"values": BUDGET_SWEEP["budgets"], "policies": BUDGET_SWEEP["hit_ratio"],
                          "origin_bytes": BUDGET_SWEEP["origin_bytes"]}}
    html = write_sweep_report(tmp_path, summary).read_text()
    assert 'id="fig-budget_frontier"' in html and "federated hits 64.0%" in html


def test_calibration_table_lists_each_predictor() -> None:
    _, md = render_report(make_results())
    assert "| federated | 0.0500 | 0.0040 | isotonic (4 edges) |" in md

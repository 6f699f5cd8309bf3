"""A real Prometheus scrapes a run's exporter; every dashboard query must return numbers."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_monitoring import ScrapedRun, dashboard_queries, require_prometheus


@pytest.mark.slow
def test_every_dashboard_query_returns_data(scraped_smoke: ScrapedRun) -> None:
    require_prometheus()
    queries = dashboard_queries()
    assert queries, "the dashboard has no PromQL targets"
    assert scraped_smoke.dashboard is not None
    missing = "\n".join(f"  [{title}] {expr}" for title, expr in queries if not scraped_smoke.dashboard[expr])
    assert not missing, f"no data at any scrape of the run for:\n{missing}\nrun log:\n{scraped_smoke.log[-3000:]}"
    assert scraped_smoke.up == ["1"], f"the exporter target is not up: {scraped_smoke.up}"


@pytest.mark.slow
def test_exported_counters_equal_results(scraped_smoke: ScrapedRun) -> None:
    """Count once: per policy, the exported request and origin-byte counters summed over edges
    equal results.json's requests and origin_bytes (reactive policies were once counted twice)."""
    policies = json.loads((scraped_smoke.out / "results.json").read_text())["policies"]
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(scraped_smoke.metrics_text):
        if family.name in ("edgecache_requests", "edgecache_origin_bytes"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    sums[family.name][sample.labels["policy"]] += sample.value
    assert policies
    for name, row in policies.items():
        overall = row["overall"]
        assert sums["edgecache_requests"][name] == overall["requests"], name
        assert sums["edgecache_origin_bytes"][name] == overall["origin_bytes"], name

"""A real Prometheus scrapes a run's exporter; every dashboard query must return numbers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_monitoring import PrometheusServer, TrafficRun, dashboard_queries, has_number

DEADLINE_S = 300  # the real smoke run (Spark, Flower, replay) takes well under a minute


@pytest.mark.slow
def test_every_dashboard_query_returns_data(prometheus: PrometheusServer, metrics_traffic: TrafficRun,
                                            metrics_port: int, tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert queries, "the dashboard has no PromQL targets"
    pending = {expr: title for title, expr in queries}
    deadline = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < deadline:
        for expr in list(pending):
            if has_number(prometheus.query(expr)):
                del pending[expr]
        if pending and metrics_traffic.proc.poll() is not None:
            pytest.fail(f"the run exited ({metrics_traffic.proc.returncode}) before Prometheus saw data "
                        f"for {len(pending)} queries; run log:\n{metrics_traffic.log_tail()}")
        time.sleep(1)
    missing = "\n".join(f"  [{title}] {expr}" for expr, title in pending.items())
    assert not pending, (f"no data after {DEADLINE_S} s for:\n{missing}\nrun log:\n"
                         f"{metrics_traffic.log_tail()}\nprometheus log: {prometheus.log}")
    up = prometheus.query('up{job="edgecache"}')
    assert [s["value"][1] for s in up] == ["1"], f"the exporter target is not up: {up}"
    _assert_counters_equal_results(tmp_path / "run", metrics_port, metrics_traffic)


def _assert_counters_equal_results(run: Path, port: int, traffic: TrafficRun) -> None:
    """Count once: per policy, the exported request and origin-byte counters summed over edges
    equal results.json's requests and origin_bytes (reactive policies were once counted twice)."""
    deadline = time.monotonic() + DEADLINE_S
    while not (run / "report.html").exists():
        if time.monotonic() > deadline or traffic.proc.poll() is not None:
            pytest.fail(f"the run did not finish its report; run log:\n{traffic.log_tail()}")
        time.sleep(1)
    policies = json.loads((run / "results.json").read_text())["policies"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        if family.name in ("edgecache_requests", "edgecache_origin_bytes"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    sums[family.name][sample.labels["policy"]] += sample.value
    for name, row in policies.items():
        overall = row["overall"]
        assert sums["edgecache_requests"][name] == overall["requests"], name
        assert sums["edgecache_origin_bytes"][name] == overall["origin_bytes"], name

"""A real Prometheus scrapes a run's exporter; every dashboard query must return numbers."""

from __future__ import annotations

import time

import pytest

from tests.fixtures_monitoring import PrometheusServer, TrafficRun, dashboard_queries, has_number

DEADLINE_S = 300  # the real smoke run (Spark, Flower, replay) takes well under a minute


@pytest.mark.slow
def test_every_dashboard_query_returns_data(prometheus: PrometheusServer,
                                            metrics_traffic: TrafficRun) -> None:
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

"""Fixtures for the monitoring tests (registered in tests/conftest.py).

`prometheus` runs Debian's real `prometheus` binary on a free loopback port with its own temp
storage, scraping the exporter on `metrics_port` every second, and stops it afterwards.
`metrics_traffic` runs the process that produces the metrics (see `traffic_command`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "edgecache.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"
# What the test substitutes for Grafana's built-in interval variables.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def traffic_command(port: int, out: Path) -> list[str]:
    """A real `edgecache run` of the smoke experiment, serving metrics until terminated."""
    return [sys.executable, "-m", "simulation.cli", "run", "--config", str(ROOT / "experiments" / "smoke.toml"),
            "--out", str(out), "--metrics-port", str(port),
            "--set", "monitoring.metrics_addr=127.0.0.1", "--set", "monitoring.linger_s=600"]


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, raw expr) of every query target, rows' nested panels included."""
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            out += [(p["title"], t["expr"]) for t in p.get("targets", []) if "expr" in t]
    return out


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """Replace Grafana variables: template variables by their 'All' value, built-ins by a window."""
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("includeAll"):
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            current = var["current"]["value"]
            values[var["name"]] = "|".join(current) if isinstance(current, list) else str(current)

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"dashboard expr uses ${name}, which is neither a template variable "
                           f"nor one of {sorted(GRAFANA_BUILTINS)}: {expr}")
        return values[name]
    return _VAR.sub(repl, expr)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, concrete PromQL) for every target of the shipped dashboard."""
    dash = load_dashboard()
    return [(title, substitute(expr, dash)) for title, expr in dashboard_targets(dash)]


@dataclass
class PrometheusServer:
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the result vector (raises on a PromQL error)."""
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", f"{expr}: {body}"
        result = body["data"]["result"]
        return result if body["data"]["resultType"] == "vector" else [{"value": result}]


def has_number(result: list[dict[str, Any]]) -> bool:
    """True when some sample of an instant-query result is a finite number."""
    return any(math.isfinite(float(s["value"][1])) for s in result)


def _scrape_config(target: str) -> dict[str, Any]:
    """The shipped scrape config, pointed at `target` and scraping every second."""
    cfg = yaml.safe_load(SCRAPE_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in cfg["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [target]
    return cfg  # type: ignore[no-any-return]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"prometheus not ready at {url} after {timeout_s} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (so children go too), then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping 127.0.0.1:<metrics_port> every second; stopped afterwards."""
    from tests.conftest import require

    binary = shutil.which("prometheus")
    require(binary is not None, "the `prometheus` binary is not on PATH",
            "apt-get install prometheus (Debian's package; .ci/run installs it when root)")
    home = tmp_path / "prometheus"
    home.mkdir()
    config = home / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(f"127.0.0.1:{metrics_port}")))
    url, log = f"http://127.0.0.1:{free_port()}", home / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(url, proc, log)
        yield PrometheusServer(url, log)
    finally:
        _stop(proc)


@dataclass
class TrafficRun:
    """The process producing metrics and the file holding its output."""

    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@pytest.fixture
def metrics_traffic(tmp_path: Path, metrics_port: int) -> Iterator[TrafficRun]:
    """Run `traffic_command` on `metrics_port` (output in run.log); stopped at teardown."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(traffic_command(metrics_port, tmp_path / "run"), cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield TrafficRun(proc, log)
    finally:
        _stop(proc)


@dataclass(frozen=True)
class Family:
    """One metric family as exposed: its type, label names and help text."""

    type: str
    labels: frozenset[str]
    help: str


def exposed_families() -> dict[str, Family]:
    """Record one sample through every monitoring.metrics helper, then parse generate_latest()."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from monitoring import metrics

    metrics.init_edge("edge-unit", ["lru"])
    metrics.record_requests("edge-unit", "lru", 1, 1)
    metrics.record_prefetch("edge-unit", "federated", 1, 10.0)
    metrics.record_origin_bytes("edge-unit", "lru", 10.0)
    metrics.observe_prediction("edge-unit", 0.001)
    metrics.record_user_events("edge-unit", "TV")
    metrics.record_redis_error("edge-unit", 0)
    metrics.record_round(1, loss=1.0, hit=0.1)
    metrics.record_edge_failures(0)
    metrics.set_stage_progress("replay", 0.5)
    text = generate_latest(REGISTRY).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith("edgecache_"):
            labels = frozenset(k for s in fam.samples for k in s.labels) - {"le"}
            out[fam.name] = Family(fam.type, labels, fam.documentation)
    return out


def exposed_series(families: dict[str, Family]) -> dict[str, Family]:
    """Every series name the exposition carries (counters' _total, histograms' _bucket...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {name + s: fam for name, fam in families.items() for s in suffixes.get(fam.type, ("",))}

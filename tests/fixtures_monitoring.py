"""Fixtures for the monitoring tests (registered in tests/conftest.py).

`running_prometheus` runs Debian's real `prometheus` binary on a free loopback port with its own
temp storage, scraping an exporter every second, and stops it afterwards. `scraped_smoke` is the suite's one full smoke run (session-scoped, shared by the end-to-end and
the Prometheus tests): served to a real Prometheus when the binary is there, everything that
the tests assert on collected before it returns, so no process outlives the fixture's set-up.
"""

from __future__ import annotations

import contextlib
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


def traffic_command(port: int, out: Path, linger_s: float, *overrides: str) -> list[str]:
    """A real `edgecache run` of the smoke experiment, serving metrics `linger_s` after it ends."""
    return [sys.executable, "-m", "simulation.cli", "run", "--config", str(ROOT / "experiments" / "smoke.toml"),
            "--out", str(out), "--metrics-port", str(port), "--set", "monitoring.metrics_addr=127.0.0.1",
            "--set", f"monitoring.linger_s={linger_s:g}", *[a for o in overrides for a in ("--set", o)]]


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

    def had_number(self, expr: str, start: float, end: float) -> bool:
        """True when `expr`, evaluated every second of [start, end] (a range query over what
        Prometheus scraped then), was a finite number at some moment: what polling it live sees."""
        q = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{q}", timeout=30) as r:
            body = json.load(r)
        assert body["status"] == "success", f"{expr}: {body}"
        return any(math.isfinite(float(v[1])) for series in body["data"]["result"] for v in series["values"])


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


def require_prometheus() -> str:
    from tests.conftest import require

    binary = shutil.which("prometheus")
    require(binary is not None, "the `prometheus` binary is not on PATH",
            "apt-get install prometheus (Debian's package; .ci/run installs it when root)")
    return str(binary)


@contextlib.contextmanager
def running_prometheus(binary: str, home: Path, metrics_port: int) -> Iterator[PrometheusServer]:
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


@dataclass(frozen=True)
class ScrapedRun:
    """The smoke run (cache.capacity=9) and what was observed of it while it ran."""

    out: Path
    results: dict[str, Any]
    log: str
    metrics_text: str  # the exporter's /metrics once the run had finished
    dashboard: dict[str, bool] | None  # dashboard expr -> had a number; None: no prometheus binary
    up: list[str] | None  # up{job="edgecache"} values at the end


SMOKE_OVERRIDES = ("cache.capacity=9",)
DEADLINE_S = 600


@pytest.fixture(scope="session")
def scraped_smoke(tmp_path_factory: pytest.TempPathFactory) -> ScrapedRun:
    """One real smoke `edgecache run` for the suite, scraped by a real Prometheus when it is installed."""
    tmp = tmp_path_factory.mktemp("scraped_smoke")
    port, out, log = free_port(), tmp / "run", tmp / "run.log"
    binary = shutil.which("prometheus")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_prometheus(binary, tmp / "prometheus", port)) if binary else None
        start = time.time()
        with log.open("wb") as sink:  # the exporter stays up 8 s after the run: /metrics, a scrape, `up`
            proc = subprocess.Popen(traffic_command(port, out, 8, *SMOKE_OVERRIDES), cwd=ROOT, env=env,
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_stop, proc)
        deadline = time.monotonic() + DEADLINE_S
        while "keeping metrics up" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the smoke run did not finish ({proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics_text = r.read().decode()
        dashboard = up = None
        if server is not None:
            time.sleep(2.5)  # a scrape after the last counter moved
            end = time.time()
            up = [s["value"][1] for s in server.query('up{job="edgecache"}')]
            dashboard = {expr: server.had_number(expr, start, end) for _, expr in dashboard_queries()}
        code = proc.wait(timeout=120)
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    return ScrapedRun(out, json.loads((out / "results.json").read_text()), text, metrics_text, dashboard, up)

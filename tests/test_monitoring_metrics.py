"""The exporter's metrics follow Prometheus conventions; the exporter and its commands work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from monitoring import metrics
from monitoring.errors import ExporterPortError
from monitoring.exporter import serve_metrics, start_exporter
from simulation.config import load_config
from simulation.errors import ConfigError
from tests.fixtures_monitoring import ROOT, exposed_families, free_port

ALLOWED_LABELS = {"edge", "policy", "result", "device", "stage", "model"}
NON_BASE_UNITS = ("_milliseconds", "_ms", "_minutes", "_hours", "_kilobytes", "_megabytes", "_mb",
                  "_percent", "_bits")
EXPECTED = {"edgecache_requests": "counter", "edgecache_prefetches": "counter",
            "edgecache_origin_bytes": "counter", "edgecache_prediction_seconds": "histogram",
            "edgecache_user_events": "counter", "edgecache_redis_errors": "counter",
            "edgecache_federated_round": "gauge", "edgecache_train_loss": "gauge",
            "edgecache_eval_hit_ratio": "gauge", "edgecache_edge_failures": "counter",
            "edgecache_run_progress_ratio": "gauge"}


def test_the_issue_metrics_are_exposed_with_their_types() -> None:
    families = exposed_families()
    assert {name: fam.type for name, fam in families.items() if name in EXPECTED} == EXPECTED


def test_names_follow_prometheus_conventions() -> None:
    for name, fam in exposed_families().items():
        assert name.islower() and name.replace("_", "").isalnum(), name
        assert fam.help.strip(), f"{name} has no help text"
        assert not name.endswith(NON_BASE_UNITS), f"{name}: use base units (seconds, bytes, ratio)"
        assert not name.endswith("_total"), f"{name}: only counters end in _total"
        if fam.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: histograms carry a base unit"


def test_counters_are_exposed_with_total_suffix() -> None:
    exposed_families()
    text = generate_latest(REGISTRY).decode()
    counters = [line.split()[2] for line in text.splitlines()
                if line.startswith("# TYPE edgecache_") and line.endswith(" counter")]
    assert counters and all(name.endswith("_total") for name in counters), counters


def test_labels_are_bounded() -> None:
    for name, fam in exposed_families().items():
        assert fam.labels <= ALLOWED_LABELS, f"{name}: unbounded or unknown labels {fam.labels - ALLOWED_LABELS}"


def test_helpers_count_what_they_are_given() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    hits0 = value("edgecache_requests_total", edge="edge-h", policy="lru", result="hit")
    bytes0 = value("edgecache_origin_bytes_total", edge="edge-h", policy="federated")
    metrics.record_requests("edge-h", "lru", hits=3, misses=2)
    metrics.record_prefetch("edge-h", "federated", items=2, nbytes=100.0)
    metrics.record_round(4, loss=0.25, hit=0.5, model="local_only")
    assert value("edgecache_requests_total", edge="edge-h", policy="lru", result="hit") == hits0 + 3
    assert value("edgecache_origin_bytes_total", edge="edge-h", policy="federated") == bytes0 + 100
    assert value("edgecache_train_loss", model="local_only") == 0.25
    with pytest.raises(ValueError, match="within 0..1"):
        metrics.set_stage_progress("replay", 1.5)


def test_exporter_serves_the_registry_and_frees_its_port() -> None:
    exporter = start_exporter(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(exporter.url, timeout=5) as r:
            body = r.read().decode()
        assert "# TYPE edgecache_requests_total counter" in body
    finally:
        exporter.stop()
    start_exporter(exporter.port, "127.0.0.1").stop()  # the port is free again


def test_busy_port_is_an_actionable_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ExporterPortError, match="pick a free port"), serve_metrics(port, "127.0.0.1"):
            pass


def test_port_zero_means_no_exporter() -> None:
    with serve_metrics(0) as exporter:
        assert exporter is None


def test_monitoring_config_keys_are_checked() -> None:
    cfg = load_config(None, ["monitoring.metrics_port=9100", "monitoring.linger_s=2"])
    assert (cfg.monitoring.metrics_port, cfg.monitoring.linger_s) == (9100, 2.0)
    with pytest.raises(ConfigError, match="monitoring.linger_s"):
        load_config(None, ["monitoring.linger_s=-1"])


def test_seed_command_runs_as_a_plain_script() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "monitoring/start_metrics_server.py", "--port", str(port),
                             "--addr", "127.0.0.1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/metrics", proc)
        assert "edgecache_prediction_seconds" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out.decode()


def _get_when_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            time.sleep(0.2)
    out = proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""
    pytest.fail(f"{url} never answered (exit {proc.returncode}): {out}")


def test_run_with_a_busy_metrics_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "simulation.cli", "run", "--config",
                               "experiments/smoke.toml", "--out", str(tmp_path), "--metrics-port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pick a free port" in " ".join(proc.stdout.split()), proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_exporter_is_loopback_only_unless_configured() -> None:
    """Closed by default: the run's and the seed command's exporter bind 127.0.0.1."""
    assert load_config(None).monitoring.metrics_addr == "127.0.0.1"
    with serve_metrics(_free_port()) as exporter:
        assert exporter is not None and exporter.server.server_address[0] == "127.0.0.1"
    from monitoring.start_metrics_server import parse_args
    assert parse_args([]).addr == "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

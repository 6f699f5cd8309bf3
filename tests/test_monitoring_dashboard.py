"""The dashboard, Grafana provisioning, scrape config and compose file fit together."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.fixtures_monitoring import (
    DASHBOARD,
    MONITORING,
    ROOT,
    SCRAPE_CONFIG,
    dashboard_queries,
    dashboard_targets,
    exposed_families,
    exposed_series,
    load_dashboard,
)

PROVISIONING = MONITORING / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED_PANELS = ("hit ratio per edge", "hit / miss rate", "p50 / p99", "activity by device",
                   "loss by round", "hit@k by round", "origin traffic")
_SELECTOR = re.compile(r"(edgecache_\w+)(?:\{([^}]*)\})?")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a compose service's ./ bind mounts."""
    out = {}
    for vol in service.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith("./"):
            out[dst] = src
    return out


def test_dashboard_is_valid_and_has_the_issue_panels() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    missing = [t for t in REQUIRED_PANELS if t not in titles]
    assert not missing, f"panels missing: {missing}"
    for panel in dash["panels"]:
        assert panel["targets"], f"{panel['title']} has no query"
        assert all(t["refId"] and t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_every_expr_resolves_its_grafana_variables() -> None:
    queries = dashboard_queries()
    assert len(queries) == len(dashboard_targets(load_dashboard()))
    assert not [expr for _, expr in queries if "$" in expr or "[[" in expr]


def test_dashboard_uses_only_exposed_metrics_and_labels() -> None:
    series = exposed_series(exposed_families())
    for title, expr in dashboard_queries():
        used = _SELECTOR.findall(expr)
        assert used, f"[{title}] queries no edgecache metric: {expr}"
        for metric, matchers in used:
            assert metric in series, f"[{title}] {metric} is not in the exporter's exposition"
            unknown = set(_MATCHER.findall(matchers)) - series[metric].labels
            assert not unknown, f"[{title}] {metric} has no labels {unknown}"
        grouped = {g.strip() for grp in _GROUPING.findall(expr) for g in grp.split(",") if g.strip()}
        known = set().union(*(series[m].labels for m, _ in used)) | {"le"}
        assert grouped <= known, f"[{title}] groups by unknown labels {grouped - known}"


def test_datasource_provisioning_matches_the_dashboard_and_compose() -> None:
    sources = _yaml(PROVISIONING / "datasources" / "prometheus.yml")
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    uids = {t["datasource"]["uid"] for p in load_dashboard()["panels"] for t in [p, *p["targets"]]}
    assert uids == {source["uid"]}, "every panel and query must use the provisioned datasource"
    services = _yaml(COMPOSE)["services"]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services and port == "9090", source["url"]


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    providers = _yaml(PROVISIONING / "dashboards" / "edgecache.yml")
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    binds = _binds(_yaml(COMPOSE)["services"]["grafana"])
    host_dir = ROOT / binds[provider["options"]["path"]]
    assert host_dir.resolve() == DASHBOARD.parent.resolve()
    assert binds["/etc/grafana/provisioning"] == "./" + str(PROVISIONING.relative_to(ROOT))


def test_compose_brings_redis_prometheus_grafana_with_existing_files() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    assert {"redis", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service["image"].count(":") == 1, f"{name}: pin the image tag"
        for src in _binds(service).values():
            assert (ROOT / src).exists(), f"{name} mounts {src}, which does not exist"
    assert "3000:3000" in services["grafana"]["ports"]
    prom = services["prometheus"]
    assert "host.docker.internal:host-gateway" in prom["extra_hosts"]
    config_flag = next(c for c in prom["command"] if c.startswith("--config.file="))
    config_path = PurePosixPath(config_flag.split("=", 1)[1])
    assert (ROOT / _binds(prom)[str(config_path)]).resolve() == SCRAPE_CONFIG.resolve()
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
             if not v.startswith(("./", "/"))}
    assert named <= set(compose.get("volumes") or {}), "declare every named volume"


def test_scrape_config_targets_the_host_exporter() -> None:
    cfg = _yaml(SCRAPE_CONFIG)
    targets = [t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["host.docker.internal:8000"], "the docs tell users --metrics-port 8000"


@pytest.mark.parametrize("path", [SCRAPE_CONFIG])
def test_promtool_accepts_the_scrape_config(path: Path) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "`promtool` is not on PATH",
            "apt-get install prometheus (Debian's package ships promtool)")
    proc = subprocess.run([str(promtool), "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

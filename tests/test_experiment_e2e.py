"""The smoke experiment end to end through the CLI: the results.json contract, determinism, a wheel install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from simulation.config import ALL_POLICIES
from tests.conftest import EXPERIMENTS, ROOT
from tests.fixtures_monitoring import ScrapedRun

POLICY_KEYS = {"hit_ratio", "byte_hit_ratio", "requests", "prefetch_bytes", "prefetch_precision"}
TIMING_KEYS = {"generate_s", "features_s", "train_s", "replay_s", "total_s"}


@pytest.fixture(scope="module")
def smoke(scraped_smoke: ScrapedRun) -> tuple[Path, dict[str, Any]]:
    """The suite's one full smoke run (cache.capacity=9), which also serves the Prometheus tests."""
    return scraped_smoke.out, scraped_smoke.results


def without_timings(value: Any) -> Any:
    """The results with every wall-clock figure removed (the only thing allowed to differ)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if k not in ("timings", "seconds") and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_results_json_matches_the_design_contract(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, r = smoke
    assert r["config"]["cache"]["capacity"] == 9
    assert "capacity = 9" in (out / "config.toml").read_text()
    w = r["workload"]
    assert {"events", "users", "items", "edges", "train_events", "test_events", "quarantined"} <= set(w)
    assert w["lines"] == w["train_events"] + w["test_events"] + sum(w["quarantined"].values())
    fed = r["federated"]
    assert fed["strategy"] == "fedavg" and len(fed["rounds"]) == 3
    assert {"round", "train_loss", "eval_hit_at_k"} <= set(fed["rounds"][0])
    assert set(ALL_POLICIES) <= set(r["policies"])
    assert fed["itemcf"]["status"] == "ok" and fed["itemcf"]["replies"] == 3, fed["itemcf"]
    quality = r["prediction_quality"]
    assert {"popularity", "markov_sql", "itemcf", "federated"} <= set(quality)
    assert quality["itemcf"]["overall"]["requests"] > 0 and 0 <= quality["itemcf"]["overall"]["hit_at_k"] <= 1
    edges = [f"edge-{i:02d}" for i in range(3)]
    for name, entry in r["policies"].items():
        assert set(entry["overall"]) >= POLICY_KEYS, name
        assert sorted(entry["per_edge"]) == edges, name
        for stats in entry["per_edge"].values():
            assert set(stats) >= POLICY_KEYS, name
        assert entry["overall"]["requests"] == w["test_events"], name
    assert set(r["timings"]) >= TIMING_KEYS
    assert (out / "report.html").stat().st_size > 0 and (out / "report.md").stat().st_size > 0


@pytest.mark.slow
def test_belady_is_never_beaten_by_a_reactive_policy(smoke: tuple[Path, dict[str, Any]]) -> None:
    policies = smoke[1]["policies"]
    for edge, stats in policies["belady"]["per_edge"].items():
        for name in ("lru", "lfu", "arc", "s3fifo", "wtinylfu"):
            assert policies[name]["per_edge"][edge]["hits"] <= stats["hits"], (name, edge)


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{args}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def _clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without what earlier tests or the checkout put there.

    In-process tests set PYTHONPATH to the checkout (the simulation engine's workers) and Ray or
    Spark may leave their addresses and interpreters behind; none of them may reach the wheel's run.
    """
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("EDGECACHE_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_same_seed_same_results_from_a_wheel_in_another_folder(smoke: tuple[Path, dict[str, Any]],
                                                               tmp_path: Path) -> None:
    """Run again, installed non-editable (`pip install` of a wheel into a fresh venv whose only other
    import path is the test venv's site-packages, for the dependencies) and from another folder:
    nothing a run needs is missing from the wheel (Lua, dashboards, ...), and the same seed and
    config give the same results.json, timings aside."""
    wheels, venv, work, src = (tmp_path / n for n in ("wheels", "venv", "elsewhere", "src"))
    work.mkdir()
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".*_cache", "tests", "benchmarks"))
    # Every step in a clean environment: an earlier in-process test leaves PYTHONPATH at the
    # checkout, where pip then finds the editable install's egg-info and skips the wheel.
    env = _clean_env(venv)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)], tmp_path, 300, env)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120, env)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, 60,
                     env).strip())
    wheel = next(wheels.glob("edgecache-*.whl"))
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path, 300, env)
    # the dependencies after the install, so pip sees no edgecache but the wheel's
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(py), "-c", "import edge_nodes.cache.library as m; print(m.__file__)"], cwd=work,
                           capture_output=True, text=True, timeout=60, env=env)
    with zipfile.ZipFile(wheel) as zf:
        top = sorted({n.split("/")[0] for n in zf.namelist()})
    assert probe.returncode == 0 and probe.stdout.startswith(str(site)), \
        f"{probe.stdout}{probe.stderr[-2000:]}\nwheel {wheel.name} holds {top}; site {site}: {sorted(os.listdir(site))}"
    _run([str(venv / "bin" / "edgecache"), "run", "--config", str(EXPERIMENTS / "smoke.toml"),
          "--out", str(work / "run"), "--set", "cache.capacity=9"], work, 900, env)
    assert (work / "run" / "report.html").is_file()
    again = json.loads((work / "run" / "results.json").read_text())
    # the shared run also served metrics to Prometheus (port, address, linger): nothing else differs
    first = {**smoke[1], "config": {k: v for k, v in smoke[1]["config"].items() if k != "monitoring"}}
    again["config"].pop("monitoring")
    assert without_timings(again) == without_timings(first)


@pytest.mark.slow
def test_the_counts_are_re_summed_during_the_test_period(smoke: tuple[Path, dict[str, Any]]) -> None:
    """federated.analytics_refresh_days (default 1): itemcf's counts re-summed daily in the replay."""
    refresh = smoke[1]["analytics_refresh"]
    assert refresh["status"] == "ok" and refresh["every_days"] == 1.0, refresh
    assert refresh["entries"] > 0 and refresh["refreshes"] >= 1, refresh  # smoke: 2 test days

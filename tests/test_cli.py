"""The `edgecache` command: help, errors that name the problem, the run directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, ROOT

SUBCOMMANDS = ("run", "generate", "features", "train", "replay", "report", "compare", "ingest", "sweep")


def edgecache(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulation.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_help_lists_every_subcommand() -> None:
    out = edgecache("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    out = edgecache(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_bad_config_key_is_named_and_exits_nonzero(tmp_path: Path) -> None:
    out = edgecache("run", "-c", str(EXPERIMENTS / "smoke.toml"), "-o", str(tmp_path),
                    "--set", "cache.capacty=3")
    assert out.returncode == 2
    assert "cache.capacty" in out.stdout and "did you mean 'capacity'" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_impossible_value_is_named(tmp_path: Path) -> None:
    out = edgecache("generate", "-c", str(EXPERIMENTS / "smoke.toml"), "-o", str(tmp_path),
                    "--set", "workload.edges=0")
    assert out.returncode == 2
    assert "workload.edges" in out.stdout


def test_missing_config_file(tmp_path: Path) -> None:
    out = edgecache("run", "-c", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "not found" in out.stdout


def test_report_on_an_empty_dir_fails_cleanly(tmp_path: Path) -> None:
    out = edgecache("report", str(tmp_path))
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr


def test_a_stage_on_a_run_directory_reads_its_own_config(tmp_path: Path) -> None:
    """Without --config a stage command takes the run's config.toml (what its earlier stages ran
    with), with --set on top; --config still chooses."""
    import json
    first = edgecache("generate", "-c", str(EXPERIMENTS / "smoke.toml"), "-o", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    again = edgecache("generate", "-o", str(tmp_path), "--set", "workload.dirty_fraction=0.0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the run's own" in again.stdout
    cfg = json.loads((tmp_path / "results.json").read_text())["config"]
    assert cfg["run"]["name"] == "smoke" and cfg["workload"]["users"] == 60  # not the base config's
    assert cfg["workload"]["dirty_fraction"] == 0.0

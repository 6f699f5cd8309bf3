"""A non-editable install has everything a run needs (package data: Lua, dashboards, ...).

The wheel is built from this checkout and installed with pip into a fresh venv whose only
other import path is the test venv's site-packages (the dependencies; the editable finder of
this checkout is not loaded). The smoke experiment then runs from another folder, so nothing
can be imported from the checkout itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


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


def test_wheel_install_runs_the_smoke_experiment_from_another_folder(tmp_path: Path) -> None:
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
    _run([str(venv / "bin" / "edgecache"), "run", "--config", str(ROOT / "experiments" / "smoke.toml"),
          "--out", str(work / "run")], work, 900, env)
    assert (work / "run" / "results.json").is_file()
    assert (work / "run" / "report.html").is_file()

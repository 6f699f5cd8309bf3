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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{args}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def test_wheel_install_runs_the_smoke_experiment_from_another_folder(tmp_path: Path) -> None:
    wheels, venv, work, src = (tmp_path / n for n in ("wheels", "venv", "elsewhere", "src"))
    work.mkdir()
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".*_cache", "tests", "benchmarks"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)], tmp_path, 300)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, 60).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("edgecache-*.whl"))
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path, 300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([str(py), "-c", "import edge_nodes.cache.library as m; print(m.__file__)"], work, 60, env)
    assert where.startswith(str(site)), where
    _run([str(venv / "bin" / "edgecache"), "run", "--config", str(ROOT / "experiments" / "smoke.toml"),
          "--out", str(work / "run")], work, 900, env)
    assert (work / "run" / "results.json").is_file()
    assert (work / "run" / "report.html").is_file()

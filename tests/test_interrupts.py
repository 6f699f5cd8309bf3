"""Ctrl-C and SIGTERM for real: each stage of the smoke experiment, interrupted at several moments.

Each case starts the CLI in its own session with a marker in its environment, waits for the
stage to begin (and, for the later moments, for the stage's own processes to appear: Ray's
raylet, the Spark JVM, Flower's SuperNodes, the embedded Redis), sends the signal, and asserts
the exit code, the one line naming the stage, and that no process of that session, and none
carrying the marker (Flower's daemons and Redis start sessions of their own), is left.
Generate and features run once for every case; each case works on a copy (but the last, which
needs them in its own process).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import EXPERIMENTS, ROOT

pytestmark = pytest.mark.slow
SMOKE = str(EXPERIMENTS / "smoke.toml")
BOUND_S = 15.0  # the bound from the signal to the exit


def _marked(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:  # a zombie is dead, only not yet reaped (a container's init may never reap it)
            if p.environ().get("EDGECACHE_TEST_MARK") == marker and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def _session(sid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (OSError, psutil.Error):
            continue
    return out


class Cli:
    """`python -m simulation.cli ARGS` in a new session, output in a file we poll."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.marker, self.log = uuid.uuid4().hex, log
        self.seen: set[psutil.Process] = set()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGECACHE_TEST_MARK": self.marker}
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "simulation.cli", *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {what}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s:\n{self.text()[-3000:]}"
            time.sleep(0.1)

    def has_process(self, *names: str) -> bool:
        # marked, or a descendant of the CLI: the embedded Redis runs in a session of its own and
        # rewrites its process title over its environment, so its mark is soon unreadable
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        found = [p for p in _marked(self.marker) + children if any(n in " ".join(_cmdline(p)) for n in names)]
        self.seen.update(found)  # checked again after the signal: none may outlive the CLI
        return bool(found)

    def interrupt(self, sig: int, stage: str, twice: bool = False) -> None:
        """Send `sig` (twice: a second one right after), assert the exit and that nothing is left."""
        self.proc.send_signal(sig)
        if twice:
            time.sleep(0.2)
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=BOUND_S)
        assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], self.text()[-3000:]
        name = signal.Signals(sig).name
        assert f"interrupted: {name} during stage {stage}" in " ".join(self.text().split()), self.text()[-3000:]
        deadline = time.monotonic() + 5  # a killed process may take a moment to be reaped by init
        left: list[psutil.Process] = []
        while time.monotonic() < deadline:
            left = _session(self.proc.pid) + _marked(self.marker) + [p for p in self.seen if _alive(p)]
            if not left:
                break
            time.sleep(0.2)
        names = [f"{p.pid}:{' '.join(_cmdline(p))[:160]}" for p in left]
        for p in left:
            p.kill()
        assert not left, f"left running after {name} in {stage}: {names}"


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _started(cli: Cli, stage: str) -> Callable[[], bool]:
    return lambda: f"stage {stage} started" in cli.text()


@pytest.fixture(scope="module")
def featured(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke experiment's logs and features, made once for every case (on the tests' Spark session)."""
    from rich.console import Console

    from simulation.config import load_config
    from simulation.pipeline import StageContext, run_stage
    from simulation.rundir import RunDir

    base = tmp_path_factory.mktemp("interrupts") / "base"
    cfg = load_config(SMOKE)
    ctx = StageContext(cfg=cfg, run=RunDir(base).create(), console=Console(quiet=True),
                       results={"config": cfg.public_dict()})
    ctx.run.save_config(cfg)
    for stage in ("generate", "features"):
        run_stage(stage, ctx)
    return base


def _copy(featured: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(featured, out)
    return out


def _cli(args: list[str], out: Path, tmp_path: Path, *extra: str) -> Cli:
    return Cli([*args, "--config", SMOKE, "--out", str(out), *extra], tmp_path / "cli.log")


def test_generate_and_features_stop_on_sigterm_and_sigint(tmp_path: Path) -> None:
    run = _cli(["run"], tmp_path / "run", tmp_path)
    run.wait_until(_started(run, "generate"), "the generate stage")
    run.interrupt(signal.SIGTERM, "generate")
    features = _cli(["run"], tmp_path / "run", tmp_path)  # the same directory: generate reruns whole
    features.wait_until(lambda: features.has_process("java"), "the Spark JVM")
    features.interrupt(signal.SIGINT, "features")


@pytest.fixture(scope="module")
def interrupted_then_trained(featured: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Train interrupted by SIGTERM once Ray's raylet runs, then the same directory trained again."""
    tmp = tmp_path_factory.mktemp("rerun")
    out = _copy(featured, tmp)
    cli = _cli(["train"], out, tmp)
    cli.wait_until(lambda: cli.has_process("raylet"), "Ray's raylet")
    cli.interrupt(signal.SIGTERM, "train")
    again = subprocess.run([sys.executable, "-m", "simulation.cli", "train", "--config", SMOKE, "--out", str(out)],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    return out, f"{again.returncode}\n{again.stdout[-3000:]}{again.stderr[-3000:]}"


def test_train_stops_at_the_start_during_ray_start_up(featured: Path, tmp_path: Path) -> None:
    cli = _cli(["train"], _copy(featured, tmp_path), tmp_path)
    cli.wait_until(_started(cli, "train"), "the train stage")
    cli.interrupt(signal.SIGINT, "train")


def test_train_stops_once_ray_runs_and_the_directory_trains_again(interrupted_then_trained: tuple[Path, str]) -> None:
    out, again = interrupted_then_trained
    assert again.startswith("0\n") and "train: done" in again, again
    assert (out / "models" / "federated.json").is_file()


def test_a_second_ctrl_c_ends_at_once(featured: Path, tmp_path: Path) -> None:
    cli = _cli(["train"], _copy(featured, tmp_path), tmp_path)
    cli.wait_until(lambda: cli.has_process("gcs_server"), "Ray's GCS")
    cli.interrupt(signal.SIGINT, "train", twice=True)


def test_train_on_the_deployment_engine_stops(featured: Path, tmp_path: Path) -> None:
    cli = _cli(["train"], _copy(featured, tmp_path), tmp_path, "--set", "federated.engine=deployment")
    cli.wait_until(lambda: cli.has_process("flower-supernode"), "the SuperNodes")
    cli.interrupt(signal.SIGINT, "train")


def test_replay_stops_with_its_redis(interrupted_then_trained: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(interrupted_then_trained[0], out)
    # One request per server call: the smoke replay lasts ~15 s rather than under one, so the
    # signal lands while the replay runs on any machine.
    cli = _cli(["replay"], out, tmp_path, "--set", "cache.replay_batch=1")
    cli.wait_until(lambda: cli.has_process("valkey-server", "redis-server"), "the embedded Redis")
    cli.interrupt(signal.SIGINT, "replay")


# Spark ran earlier in the same process here (as in a sweep: the same run_pipeline). PySpark's
# SparkContext replaces the SIGINT handler and get_spark puts the CLI's back. Without that, typer turns Spark's KeyboardInterrupt
# into a silent exit 130 (no line), or the watchdog ends the run GRACE_S later (the line, from it).
# So the handler must be ours: it ran, or the watchdog found it installed (the main thread can sit
# in a C call, Ray's start-up, for longer than GRACE_S on a loaded machine: a stop time says nothing).
def _handler_was_ours(cli: Cli, name: str) -> None:
    text = " ".join(cli.text().split())
    ran = f"{name} received during stage train: stopping" in text
    assert ran or f"the installed {name} handler is edgecache" in text, text[-3000:]


def test_run_stops_in_train_after_features_ran_in_the_same_process(tmp_path: Path) -> None:
    cli = _cli(["run"], tmp_path / "run", tmp_path)
    cli.wait_until(_started(cli, "train"), "the train stage")
    cli.interrupt(signal.SIGINT, "train")
    _handler_was_ours(cli, "SIGINT")


def test_the_watchdog_says_whose_handler_it_found() -> None:
    from simulation import interrupts

    def ours(_signum: int, _frame: object) -> None:
        raise AssertionError("not called")

    before, saved = signal.getsignal(signal.SIGINT), (interrupts._State.handler, interrupts._State.handled)
    try:
        interrupts._State.handler, interrupts._State.handled = ours, False
        signal.signal(signal.SIGINT, ours)
        assert interrupts.diagnosis(signal.SIGINT).startswith("the main thread has not run the handler yet")
        assert interrupts.diagnosis(signal.SIGINT).endswith("SIGINT handler is edgecache")
        signal.signal(signal.SIGINT, signal.default_int_handler)  # what PySpark's SparkContext installs
        assert interrupts.diagnosis(signal.SIGINT).startswith("another library replaced the handler")
        assert interrupts.diagnosis(signal.SIGINT).endswith("SIGINT handler is foreign")
    finally:
        signal.signal(signal.SIGINT, before)
        interrupts._State.handler, interrupts._State.handled = saved

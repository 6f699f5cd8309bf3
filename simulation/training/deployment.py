"""Flower's deployment engine on loopback: one SuperLink, one SuperNode per edge, `flwr run`.

Each daemon starts in its own session so that it and the `flower-superexec` processes it
spawns form one process group, which is ended as a whole (no orphans). On separate
machines the same happens by hand: `flower-superlink` on the server, and on each edge site
`flower-supernode --superlink <host>:<port> --node-config 'edge-id="edge-03" edge-index=3
examples-dir="/data/features/examples" model-dir="/data/models"'` (see README).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import tomli_w

from edge_nodes.learning.client_app import EdgeIdentity
from simulation.errors import DeploymentError
from simulation.training.plan import FederationPlan
from simulation.training.workers import REPO_ROOT, python_path, worker_env

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent
CONNECTION = "edgecache"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    """Block until something accepts connections on `port`; fail if the daemon exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeploymentError(f"{what} exited with code {proc.returncode} before listening on "
                                  f"127.0.0.1:{port}; see its log")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise DeploymentError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


class Daemon:
    """A Flower daemon in its own session; stop() ends its whole process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever of it is left (superexec children too)."""
        stop_all([self], grace)

    def _finish(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM; killing it", self.name)
        self._signal(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self._log.close()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def stop_all(daemons: list[Daemon], grace: float = 10.0) -> None:
    """SIGTERM every daemon's group at once, give them `grace` seconds together, SIGKILL the rest."""
    for d in daemons:
        d._signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    time.sleep(0.3)
    for d in daemons:
        d._finish(deadline)


def node_config(e: EdgeIdentity) -> str:
    """The --node-config string that tells a SuperNode which edge it is."""
    parts = [f'edge-id="{e.edge_id}"', f"edge-index={e.edge_index}", f'examples-dir="{e.examples_dir}"',
             f'model-dir="{e.model_dir}"']
    if e.fail_rounds:
        parts.append(f'fail-rounds="{",".join(map(str, e.fail_rounds))}"')
    return " ".join(parts)


def _env(flwr_home: Path) -> dict[str, str]:
    return {**os.environ, **worker_env(), "FLWR_HOME": str(flwr_home), "PYTHONPATH": python_path(),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _start_daemons(plan: FederationPlan, env: dict[str, str], logs: Path, link_port: int) -> list[Daemon]:
    daemons = [Daemon("superlink", [str(BIN / "flower-superlink"), "--insecure", "--port", str(link_port),
                                    "--disable-runtime-dependency-installation"], env, logs / "superlink.log")]
    wait_for_port(link_port, daemons[0].proc, "flower-superlink")
    for e in plan.edges:
        argv = [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                "--port", str(free_port()), "--node-config", node_config(e)]
        daemons.append(Daemon(f"supernode {e.edge_id}", argv, env, logs / f"supernode-{e.edge_id}.log"))
    return daemons


def run_deployment_engine(plan: FederationPlan) -> None:
    """Start SuperLink + SuperNodes on loopback, `flwr run` the app, tear everything down."""
    logs = Path(plan.settings.model_dir) / "deployment"
    logs.mkdir(parents=True, exist_ok=True)
    flwr_home = Path(tempfile.mkdtemp(prefix="edgecache-flwr-"))
    link_port = free_port()
    (flwr_home / "config.toml").write_text(tomli_w.dumps({"superlink": {
        "default": CONNECTION, CONNECTION: {"address": f"127.0.0.1:{link_port}", "insecure": True}}}))
    run_config = flwr_home / "run_config.toml"
    run_config.write_text(tomli_w.dumps(plan.settings.to_run_config()))
    env = _env(flwr_home)
    daemons: list[Daemon] = []
    s = plan.settings
    budget = s.connect_timeout_s + s.rounds * s.round_timeout_s + 300
    try:
        daemons = _start_daemons(plan, env, logs, link_port)
        with (logs / "flwr-run.log").open("wb") as out:
            done = subprocess.run([str(BIN / "flwr"), "run", str(REPO_ROOT), CONNECTION, "--stream",
                                   "--run-config", str(run_config)], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=budget, check=False)
        if done.returncode != 0:
            raise DeploymentError(f"`flwr run` exited with {done.returncode}; see {logs / 'flwr-run.log'}")
    except subprocess.TimeoutExpired as e:
        raise DeploymentError(f"`flwr run` did not finish within {budget:.0f}s; see {logs}") from e
    finally:
        stop_all(list(reversed(daemons)))
        shutil.rmtree(flwr_home, ignore_errors=True)

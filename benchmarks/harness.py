"""Run each benchmark in a fresh subprocess, sample its process tree's memory, collect its JSON.

A benchmark is a command that writes a JSON dict to the path given for `{json}`. Every dict carries `figures`: rows of value vs a baseline measured in the
same run, so the ratio is what survives a noisy, shared machine. The harness adds the
subprocess's wall time and the peak RSS of its whole process tree (JVM, Ray workers and
Redis included: the sum of the tree's RSS, sampled, so shared pages count more than once).
Descendants younger than a second are left out of the sum: a JVM forks helpers (Hadoop's
shell commands) whose copy-on-write RSS would otherwise count the JVM's memory twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
MIN_AGE_S = 1.0  # younger descendants are fork-then-exec helpers sharing their parent's pages

@dataclass(frozen=True)
class Bench:
    """One benchmark: a command (`{json}`: its JSON output path, `{logs}`: a log folder) and a timeout."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float = 600.0


@dataclass
class TreeSample:
    """Peak memory of a process tree, from periodic samples."""

    peak_rss_mb: float = 0.0
    peak_process_mb: float = 0.0
    kernel_peak_mb: float = 0.0  # wait4 ru_maxrss: the child (or a descendant it reaped), never a sum
    samples: int = 0
    series: list[tuple[float, float]] = field(default_factory=list)  # (seconds, tree RSS MB)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and its descendants that have lived at least MIN_AGE_S (none if it is gone)."""
    try:
        kids = proc.children(recursive=True)
    except psutil.Error:
        return []
    now = time.time()
    settled = []
    for p in kids:
        with contextlib.suppress(psutil.Error):
            if now - p.create_time() >= MIN_AGE_S:
                settled.append(p)
    return [proc, *settled]


def tree_rss_mb(proc: psutil.Process) -> tuple[float, float]:
    """(sum, max) RSS in MB over a process and its settled descendants; vanished ones count 0."""
    total, biggest = 0.0, 0.0
    for p in _tree(proc):
        try:
            rss = p.memory_info().rss / MB
        except psutil.Error:
            continue
        total += rss
        biggest = max(biggest, rss)
    return total, biggest


def tree_top(proc: psutil.Process, n: int = 5) -> list[tuple[str, float]]:
    """The n biggest processes of a tree by RSS: (name, MB), to say what a peak is made of."""
    rows = []
    for p in _tree(proc):
        try:
            rows.append((p.name(), round(p.memory_info().rss / MB, 1)))
        except psutil.Error:
            continue
    return sorted(rows, key=lambda r: -r[1])[:n]


def run_sampled(argv: list[str], timeout_s: float, stdout: Path, interval: float = 0.25,
                on_sample: Callable[[float, float, psutil.Process], None] | None = None,
                env: dict[str, str] | None = None) -> tuple[int, float, TreeSample]:
    """Run argv in its own session; return (exit code, wall seconds, memory samples).

    Output (stdout and stderr together) goes to `stdout`. On timeout the whole process group
    is ended, so no JVM or Ray worker outlives the benchmark.
    """
    sample = TreeSample()
    t0 = time.perf_counter()
    with stdout.open("w") as out:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=env or _env())
        proc = psutil.Process(child.pid)
        code: int | None = None
        while code is None:
            elapsed = time.perf_counter() - t0
            if elapsed > timeout_s:
                _kill_group(child)
            total, biggest = tree_rss_mb(proc)
            _record(sample, elapsed, total, biggest)
            if on_sample is not None:
                on_sample(elapsed, total, proc)
            code = _reap(child, sample)
            if code is None:
                time.sleep(interval)
    _kill_group(child)  # leftovers (daemons that outlived their parent) of this benchmark only
    return code, time.perf_counter() - t0, sample


def _reap(child: subprocess.Popen[Any], sample: TreeSample) -> int | None:
    """Exit code once the child has ended, else None; folds in its own kernel-measured peak RSS.

    wait4's ru_maxrss covers the child and the descendants it reaped: it catches a peak that
    fell between two samples (or a benchmark shorter than one interval).
    """
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if pid == 0:
        return None
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024  # KB on Linux
    sample.kernel_peak_mb = peak
    sample.peak_process_mb = max(sample.peak_process_mb, peak)
    sample.peak_rss_mb = max(sample.peak_rss_mb, peak)
    return child.returncode


def _record(sample: TreeSample, elapsed: float, total: float, biggest: float) -> None:
    sample.samples += 1
    sample.peak_rss_mb = max(sample.peak_rss_mb, total)
    sample.peak_process_mb = max(sample.peak_process_mb, biggest)
    sample.series.append((round(elapsed, 2), round(total, 1)))


def _kill_group(child: subprocess.Popen[Any]) -> None:
    """End the benchmark's process group (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, 9)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def python(*args: str) -> tuple[str, ...]:
    """A command line that runs this interpreter."""
    return (sys.executable, *args)


def run_bench(bench: Bench, workdir: Path) -> dict[str, Any]:
    """Run one benchmark in a fresh subprocess; its dict plus wall time and peak tree RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = workdir / f"{bench.name}.json"
    json_path.unlink(missing_ok=True)
    log_path = workdir / f"{bench.name}.log"
    logs = str(workdir / f"{bench.name}-logs")
    argv = [a.replace("{json}", str(json_path)).replace("{logs}", logs) for a in bench.argv]
    log.info("bench %s: %s", bench.name, " ".join(argv))
    code, wall, sample = run_sampled(argv, bench.timeout_s, log_path)
    result: dict[str, Any] = {"name": bench.name, "command": argv, "returncode": code,
                              "wall_s": round(wall, 2), "peak_rss_mb": round(sample.peak_rss_mb, 1),
                              "peak_process_rss_mb": round(sample.peak_process_mb, 1),
                              "kernel_peak_rss_mb": round(sample.kernel_peak_mb, 1),
                              "log": str(log_path)}
    try:
        result.update(json.loads(json_path.read_text()))
    except (OSError, ValueError, KeyError, IndexError) as e:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        result["error"] = f"{type(e).__name__}: {e} (exit {code}); log tail:\n{tail}"
    if code != 0 and "error" not in result:
        result["error"] = f"exit {code}"
    return result


def figure(name: str, value: float, unit: str, baseline: str, baseline_value: float,
           note: str = "") -> dict[str, Any]:
    """One row of the bench table: a value, its same-run baseline and value / baseline."""
    ratio = value / baseline_value if baseline_value else float("nan")
    row = {"figure": name, "value": _round(value), "unit": unit, "baseline": baseline,
           "baseline_value": _round(baseline_value), "ratio": _round(ratio)}
    if note:
        row["note"] = note
    return row


def _round(x: float) -> float:
    return float(f"{x:.4g}") if x == x else x


def run_all(benches: list[Bench], workdir: Path,
            done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run benchmarks one after the other (never in parallel: they would share the 2 cores)."""
    results: dict[str, Any] = {}
    for bench in benches:
        results[bench.name] = run_bench(bench, workdir)
        if done is not None:
            done(results[bench.name])
    return results


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was at the start."""
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "load_avg_1_5_15": [round(x, 2) for x in load], "python": sys.version.split()[0]}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write bench.json (sorted keys would scatter the figures; keep insertion order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def figures_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of every benchmark, tagged with its benchmark's name, in run order."""
    rows = []
    for name, res in results.items():
        for f in res.get("figures", []):
            rows.append({"bench": name, **f})
    return rows

"""The Spark driver's heap: sized from the input ("auto"), and a clear failure when it runs out.

In local mode the driver JVM runs the whole job. Too small a heap does not always fail: Spark
spills and retries for many minutes. So "auto" sizes the heap from the bytes of logs (about 3x
the input, at least 2g: the measured need was under 2g at 4M events and 6g at 16M, whose logs
are ~2 GB), bounded by half of the machine's memory; and the JVM runs with
-XX:+ExitOnOutOfMemoryError, so the first OutOfMemoryError ends it at once (exit code 3) and the
stage fails with the key to change and a value that works instead of retrying silently.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import psutil

from spark_features.errors import FeaturesError

AUTO = "auto"
MIN_AUTO_GB = 2
HEAP_PER_INPUT_BYTE = 3.0
OOM_EXIT_CODE = 3  # HotSpot's exit status under -XX:+ExitOnOutOfMemoryError
FAIL_FAST_OPTIONS = "-XX:+ExitOnOutOfMemoryError"
# Below this much input the JVM compiles with its client JIT only (C1): a small job is mostly
# JVM warm-up, and C2's compiles cost more than they return (the smoke job: 44 -> 31 s), while
# on the default's 133 MB of logs C2 wins (116 s vs 143 s with C1 only).
QUICK_JIT_MAX_BYTES = 32 * 2**20
QUICK_JIT_OPTIONS = "-XX:TieredStopAtLevel=1"
_SIZE = re.compile(r"(\d+)([kmgt]?)", re.IGNORECASE)
_UNIT = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class DriverOutOfMemory(FeaturesError):
    """The Spark driver ran out of Java heap; the message names features.driver_memory and a value."""


def parse_size(text: str) -> int:
    """Bytes of a JVM size such as '512m' or '2g'; ValueError for anything else."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a JVM memory size (e.g. 512m, 2g)")
    return int(m.group(1)) * _UNIT[m.group(2).lower()]


def input_bytes(logs: Path) -> int:
    """Bytes of every log part file under `logs`."""
    return sum(p.stat().st_size for p in logs.rglob("part-*") if p.is_file())


def auto_heap(logs_bytes: int, machine_bytes: int | None = None) -> str:
    """The driver heap for `logs_bytes` of input: ~3x, at least 2g, at most half of the machine."""
    machine = machine_bytes if machine_bytes is not None else psutil.virtual_memory().total
    want = max(MIN_AUTO_GB, math.ceil(logs_bytes * HEAP_PER_INPUT_BYTE / 2**30))
    cap = max(1, int(machine * 0.5 // 2**30))
    return f"{min(want, max(cap, MIN_AUTO_GB))}g"


def java_options(quick_jit: bool) -> str:
    """The driver's extra Java options: fail fast on OutOfMemoryError, and C1 only for small jobs."""
    return f"{FAIL_FAST_OPTIONS} {QUICK_JIT_OPTIONS}" if quick_jit else FAIL_FAST_OPTIONS


def quick_jit_for(logs: Path) -> bool:
    """Whether the job on `logs` is small enough that C1 alone starts it faster (QUICK_JIT_MAX_BYTES)."""
    return input_bytes(logs) < QUICK_JIT_MAX_BYTES


def resolve_driver_memory(setting: str, logs: Path) -> str:
    """features.driver_memory as Spark takes it: the value itself, or the auto size for `logs`."""
    return auto_heap(input_bytes(logs)) if setting.strip().lower() == AUTO else setting


def bigger_heap(current: str, logs: Path) -> str:
    """A heap to suggest after an OutOfMemoryError: twice the current one, at least the auto size."""
    doubled = math.ceil(2 * parse_size(current) / 2**30)
    return f"{max(doubled, int(auto_heap(input_bytes(logs))[:-1]))}g"


def jvm_ran_out_of_heap(wait_s: float = 15.0) -> bool:
    """True when the py4j gateway JVM has exited with the OutOfMemoryError exit code."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return False
    try:
        return proc.wait(timeout=wait_s) == OOM_EXIT_CODE
    except subprocess.TimeoutExpired:
        return False  # the JVM is alive: the error was something else


def out_of_heap_error(driver_memory: str, heap: str, logs: Path) -> DriverOutOfMemory:
    """The message for a driver that ran out of heap: what was set, what was used, what to set."""
    return DriverOutOfMemory(
        f"the Spark driver ran out of Java heap (features.driver_memory = {driver_memory!r}, heap {heap}, "
        f"{input_bytes(logs) / 2**20:.0f} MB of logs); set features.driver_memory = \"{bigger_heap(heap, logs)}\" "
        f"(--set features.driver_memory={bigger_heap(heap, logs)}) or \"auto\"")

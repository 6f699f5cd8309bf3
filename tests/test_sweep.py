"""Sweeps: the file format, stage reuse, the combined report and results["capacity_sweep"].

The sweep runs the real stages (generate, Spark features, Flower rounds, Redis replay) on the
smoke workload: shared stages once in shared/, then one replay per cache size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulation.errors import ConfigError
from simulation.sweep import load_sweep, plan_stages
from tests.conftest import EXPERIMENTS, ROOT


def sweep_file(tmp_path: Path, key: str, values: str, extra: str = "") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nbase = "{EXPERIMENTS / "smoke.toml"}"\nkey = "{key}"\nvalues = {values}\n'
                    f'\n[run]\nname = "t"\n{extra}')
    return path


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("sweep_*.toml")), ids=lambda p: p.stem)
def test_every_sweep_file_validates(path: Path) -> None:
    spec = load_sweep(path)
    assert len(spec.values) >= 3
    shared, _ = plan_stages(spec.key, spec.reuse)
    expected = {"cache": ("generate", "features", "train"), "federated": ("generate", "features"),
                "workload": ()}
    assert shared == expected[spec.section]


def test_a_sweep_over_the_refresh_period_reruns_only_the_replay() -> None:
    from simulation.config import load_config
    from simulation.pipeline import KEY_STAGES

    assert plan_stages("federated.analytics_refresh_days", True) == (("generate", "features", "train"),
                                                                      ("replay", "report"))
    assert plan_stages("federated.rounds", True)[0] == ("generate", "features")
    readers = {}
    for key, stage in KEY_STAGES.items():
        section, name = key.split(".")
        assert getattr(getattr(load_config(None, [f"{key}=2"]), section), name) == 2, key  # a real key
        # no module of an earlier stage reads the key (its section's stage reads the rest)
        for folder in ("simulation/training", "aggregator", "spark_features", "simulation/workload"):
            for py in (ROOT / folder).rglob("*.py"):
                if name in py.read_text():
                    readers.setdefault(key, []).append(str(py.relative_to(ROOT)))
        assert stage == "replay"
    assert not readers, readers


def test_all_five_sweeps_exist() -> None:
    names = {p.stem for p in EXPERIMENTS.glob("sweep_*.toml")}
    assert {"sweep_cache_size", "sweep_edges", "sweep_noniid", "sweep_strategy", "sweep_dp"} <= names


@pytest.mark.parametrize(("body", "message"), [
    ("[run]\nname = 'x'\n", "no \\[sweep\\] table"),
    ("[sweep]\nkey = 'capacity'\nvalues = [1]\n", "dotted config key"),
    ("[sweep]\nkey = 'cache.capacity'\nvalues = []\n", "non-empty list"),
    ("[sweep]\nkey = 'cache.capacity'\nvalues = [1]\nstep = 2\n", "sweep.step"),
    ("[sweep]\nkey = 'cache.capacity'\nvalues = [10, 500]\n", "point 1 \\(cache.capacity = 500\\)"),
    ("[sweep]\nkey = 'cache.capacty'\nvalues = [10]\n", "did you mean 'capacity'"),
])
def test_bad_sweep_files_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body + "[workload]\nitems = 120\n")
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)


@pytest.mark.slow
def test_cache_size_sweep_trains_once_and_replays_each_capacity(tmp_path: Path) -> None:
    from simulation.cli import app

    path = sweep_file(tmp_path, "cache.capacity", "[10, 30]")
    out = CliRunner().invoke(app, ["sweep", "--config", str(path), "--out", str(tmp_path / "o")])
    assert out.exit_code == 0, out.output
    root = tmp_path / "o"
    summary = json.loads((root / "sweep.json").read_text())
    assert summary["shared_stages"] == ["generate", "features", "train"]
    assert sorted(p.name for p in (root / "shared" / "models").glob("round-*.npz")) == [
        "round-1.npz", "round-2.npz", "round-3.npz"]
    for i, cap in enumerate((10, 30)):
        point = json.loads((root / f"point-{i}" / "results.json").read_text())
        assert point["config"]["cache"]["capacity"] == cap
        assert point["capacity_sweep"]["capacities"] == [10, 30]
        assert (root / f"point-{i}" / "models").is_symlink()
        assert point["policies"]["lru"]["overall"]["requests"] > 0
    lru = summary["curves"]["policies"]["lru"]
    assert lru[0] < lru[1]  # a larger cache hits more on the same stream
    assert 'id="fig-sweep_curves"' in (root / "sweep.html").read_text()
    assert 'id="fig-capacity_sweep"' in (root / "point-1" / "report.html").read_text()

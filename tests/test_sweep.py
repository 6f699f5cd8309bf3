"""Sweeps: the file format, stage reuse, the combined report and results["capacity_sweep"].

The pipeline stages are replaced by tiny fakes (registered in STAGES for the test) so the
sweep machinery is tested on its own; the report stage is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from simulation import pipeline
from simulation.errors import ConfigError
from simulation.pipeline import StageContext
from simulation.sweep import load_sweep, plan_stages, run_sweep
from tests.conftest import EXPERIMENTS

CALLS: list[str] = []  # "<run dir>:<stage>" for every fake stage call


def _calls(ctx: StageContext, stage: str) -> None:
    CALLS.append(f"{ctx.run.root.name}:{stage}")


def fake_generate(ctx: StageContext) -> dict[str, Any]:
    _calls(ctx, "generate")
    ctx.run.catalog.write_text("catalog")
    return {"workload": {"events": 100, "users": 5, "items": 120, "edges": 2, "train_events": 80, "test_events": 20}}


def fake_features(ctx: StageContext) -> dict[str, Any]:
    _calls(ctx, "features")
    (ctx.run.features / "examples").mkdir(parents=True, exist_ok=True)
    return {}


def fake_train(ctx: StageContext) -> dict[str, Any]:
    _calls(ctx, "train")
    ctx.run.require(ctx.run.features / "examples", "features")
    return {"federated": {"strategy": ctx.cfg.federated.strategy,
                          "rounds": [{"round": 1, "train_loss": 2.0, "eval_hit_at_k": 0.2}]}}


def fake_replay(ctx: StageContext) -> dict[str, Any]:
    _calls(ctx, "replay")
    ctx.run.require(ctx.run.catalog, "generate")
    cap = ctx.cfg.cache.capacity
    bonus = 0.05 if ctx.cfg.federated.strategy == "fedprox" else 0.0

    def stats(hr: float) -> dict[str, Any]:
        s = {"hit_ratio": hr, "byte_hit_ratio": hr, "requests": 10, "prefetch_bytes": 0, "prefetch_precision": None}
        return {"overall": s, "per_edge": {"edge-00": s, "edge-01": s}}
    return {"policies": {"lru": stats(cap / 200), "belady": stats(cap / 100), "federated": stats(cap / 150 + bonus)}}


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    for stage in ("generate", "features", "train", "replay"):
        monkeypatch.setitem(pipeline.STAGES, stage, f"tests.test_sweep:fake_{stage}")


def sweep_file(tmp_path: Path, key: str, values: str, extra: str = "") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nbase = "{EXPERIMENTS / "smoke.toml"}"\nkey = "{key}"\nvalues = {values}\n'
                    f'\n[run]\nname = "t"\n{extra}')
    return path


def calls() -> list[str]:
    return sorted(CALLS)


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("sweep_*.toml")), ids=lambda p: p.stem)
def test_every_sweep_file_validates(path: Path) -> None:
    spec = load_sweep(path)
    assert len(spec.values) >= 3
    shared, _ = plan_stages(spec.key, spec.reuse)
    expected = {"cache": ("generate", "features", "train"), "federated": ("generate", "features"),
                "workload": ()}
    assert shared == expected[spec.section]


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


def test_cache_size_sweep_trains_once_and_replays_each_capacity(tmp_path: Path, fake_stages: None) -> None:
    spec = load_sweep(sweep_file(tmp_path, "cache.capacity", "[10, 20, 40]"))
    result = run_sweep(spec, tmp_path / "out", Console(quiet=True))
    root = tmp_path / "out"
    assert calls() == ["point-0:replay", "point-1:replay", "point-2:replay",
                           "shared:features", "shared:generate", "shared:train"]
    assert [p["status"] for p in result.points] == ["ok"] * 3
    summary = json.loads((root / "sweep.json").read_text())
    assert summary["curves"]["policies"]["lru"] == [0.05, 0.1, 0.2]
    assert summary["shared_stages"] == ["generate", "features", "train"]
    point = json.loads((root / "point-1" / "results.json").read_text())
    assert point["capacity_sweep"]["capacities"] == [10, 20, 40]
    assert point["config"]["cache"]["capacity"] == 20 and point["sweep"]["value"] == 20
    assert (root / "point-1" / "catalog.parquet").is_symlink()
    assert 'id="fig-capacity_sweep"' in (root / "point-1" / "report.html").read_text()
    page = (root / "sweep.html").read_text()
    assert 'id="fig-sweep_curves"' in page and "ran once in shared/" in page
    assert "capacity = 20" in (root / "point-1" / "config.toml").read_text()


def test_non_numeric_sweep_retrains_per_point(tmp_path: Path, fake_stages: None) -> None:
    spec = load_sweep(sweep_file(tmp_path, "federated.strategy", '["fedavg", "fedprox"]'))
    run_sweep(spec, tmp_path / "out", Console(quiet=True))
    root = tmp_path / "out"
    assert [c for c in calls() if c.endswith("train")] == ["point-0:train", "point-1:train"]
    assert [c for c in calls() if c.endswith("generate")] == ["shared:generate"]
    summary = json.loads((root / "sweep.json").read_text())
    fed = summary["curves"]["policies"]["federated"]
    assert fed[1] == pytest.approx(fed[0] + 0.05)
    md = (root / "sweep.md").read_text()
    assert "| policy | fedavg | fedprox |" in md


def test_unlanded_stage_leaves_points_incomplete_not_faked(tmp_path: Path, fake_stages: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pipeline.STAGES, "train", None)
    spec = load_sweep(sweep_file(tmp_path, "cache.capacity", "[10, 20]"))
    result = run_sweep(spec, tmp_path / "out", Console(quiet=True))
    assert [p["status"] for p in result.points] == ["incomplete", "incomplete"]
    assert result.points[0]["missing"] == ["train", "replay", "report"]
    page = (tmp_path / "out" / "sweep.html").read_text()
    assert "no curve" in page and "missing train, replay, report" in page


def test_cli_sweep(tmp_path: Path, fake_stages: None) -> None:
    from simulation.cli import app

    path = sweep_file(tmp_path, "cache.capacity", "[10, 20]")
    out = CliRunner().invoke(app, ["sweep", "--config", str(path), "--out", str(tmp_path / "o"),
                                   "--set", "workload.events=3000"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "o" / "sweep.html").is_file()
    assert json.loads((tmp_path / "o" / "point-0" / "results.json").read_text())["config"]["workload"]["events"] == 3000

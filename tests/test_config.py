"""Config loading: experiment files, overrides, and every validation error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.config import ALL_POLICIES, ExperimentConfig, build_config, load_config
from simulation.errors import ConfigError
from simulation.rundir import RunDir
from simulation.sweep import load_sweep
from tests.conftest import EXPERIMENTS


def test_every_experiment_file_loads() -> None:
    files = sorted(EXPERIMENTS.glob("*.toml"))
    assert {"default.toml", "smoke.toml"} <= {f.name for f in files}
    for f in files:
        if f.name.startswith("sweep_"):
            assert load_sweep(f).values, f
        else:
            assert isinstance(load_config(f), ExperimentConfig)


def test_a_sweep_file_run_as_one_experiment_points_to_sweep() -> None:
    with pytest.raises(ConfigError, match="edgecache sweep"):
        load_config(EXPERIMENTS / "sweep_cache_size.toml")


def test_default_experiment_values() -> None:
    cfg = load_config(EXPERIMENTS / "default.toml")
    assert cfg.workload.edges == 8 and cfg.workload.events == 1_000_000
    assert cfg.federated.rounds == 10 and cfg.federated.strategy == "fedavg"
    assert cfg.cache.policies == ALL_POLICIES


def test_override_types_are_parsed() -> None:
    cfg = load_config(EXPERIMENTS / "smoke.toml", [
        "cache.capacity=7", "federated.strategy=fedprox", "workload.noniid_alpha=0.1",
        "cache.policies=['lru','federated']", "federated.resume=true"])
    assert cfg.cache.capacity == 7
    assert cfg.federated.strategy == "fedprox"
    assert cfg.workload.noniid_alpha == pytest.approx(0.1)
    assert cfg.cache.policies == ("lru", "federated")
    assert cfg.federated.resume is True


def test_int_is_accepted_for_float() -> None:
    assert build_config({"workload": {"noniid_alpha": 2}}).workload.noniid_alpha == 2.0


@pytest.mark.parametrize(("raw", "names"), [
    ({"cache": {"capacty": 3}}, ["cache.capacty", "did you mean 'capacity'"]),
    ({"cahce": {"capacity": 3}}, ["[cahce]", "did you mean 'cache'"]),
    ({"workload": {"edges": 0}}, ["workload.edges", ">= 1"]),
    ({"workload": {"edges": "eight"}}, ["workload.edges", "must be int"]),
    ({"workload": {"edges": True}}, ["workload.edges", "must be int"]),
    ({"workload": {"noniid_alpha": 0.0}}, ["workload.noniid_alpha", "> 0"]),
    ({"workload": {"dirty_fraction": 0.9}}, ["workload.dirty_fraction", "<= 0.5"]),
    ({"federated": {"strategy": "fedbest"}}, ["federated.strategy", "fedavg"]),
    ({"federated": {"engine": "grpc"}}, ["federated.engine", "simulation, deployment"]),
    ({"model": {"kind": "bert4rec"}}, ["model.kind", "pooled, gru4rec, sasrec"]),
    ({"federated": {"local_layers": ["gru_wx"]}}, ["federated.local_layers", "'gru_wx'"]),
    ({"cache": {"policies": ["lru", "magic"]}}, ["cache.policies", "'magic'"]),
    ({"cache": {"policies": "lru"}}, ["cache.policies", "must be a list"]),
    ({"cache": {"capacity_unit": "pages"}}, ["cache.capacity_unit", "items, bytes"]),
    ({"federated": {"resume": "yes"}}, ["federated.resume", "true or false"]),
    ({"workload": {"items": 100}, "cache": {"capacity": 100}}, ["cache.capacity", "whole catalog"]),
    ({"workload": {"days": 7}, "split": {"test_days": 7}}, ["split.test_days", "workload.days"]),
    ({"workload": {"edges": 2}, "federated": {"min_nodes": 3}}, ["federated.min_nodes"]),
    ({"workload": {"start_date": "April 1st"}}, ["workload.start_date", "YYYY-MM-DD"]),
    ({"workload": {"source": "ingest"}}, ["workload.ingest_path"]),
    ({"cache": 5}, ["[cache]", "table"]),
])
def test_bad_config_names_the_key(raw: dict, names: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    for name in names:
        assert name in str(err.value)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["capacity=3"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_config_is_frozen() -> None:
    cfg = load_config(EXPERIMENTS / "smoke.toml")
    with pytest.raises(AttributeError):
        cfg.cache.capacity = 5  # type: ignore[misc]


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(EXPERIMENTS / "smoke.toml", ["cache.policies=['lru','belady']"])
    saved = RunDir(tmp_path / "run").save_config(cfg)
    assert load_config(saved) == cfg


def test_results_config_masks_the_redis_password_and_config_toml_keeps_it_private(tmp_path: Path) -> None:
    cfg = load_config(None, ['redis.url="redis://alice:s3cret@cache.example:6379/0"'])
    assert cfg.public_dict()["redis"]["url"] == "redis://alice:***@cache.example:6379/0"
    assert cfg.to_dict()["redis"]["url"].endswith("s3cret@cache.example:6379/0")
    saved = RunDir(tmp_path / "run").save_config(cfg)
    assert load_config(saved) == cfg  # re-runnable as is
    assert saved.stat().st_mode & 0o077 == 0  # so only its owner can read it

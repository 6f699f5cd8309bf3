"""One fact, one home: name lists pinned to their registries, mirrors pinned to the config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from aggregator.settings import ServerSettings
from aggregator.strategies import STRATEGIES
from edge_nodes.cache.modes import MODES
from edge_nodes.cache.settings import EVICTIONS, CacheSettings
from edge_nodes.devices import DEVICES
from edge_nodes.learning.kinds import KINDS, LOCAL_OK
from edge_nodes.learning.task import TrainSettings
from simulation import config
from simulation.mirrors import mirror
from simulation.replay.predictors import PREDICTORS
from simulation.replay.reactive import OFFLINE, REACTIVE

ROOT = Path(__file__).resolve().parent.parent
BASE = config.ExperimentConfig()


def test_config_strategy_choices_are_the_strategy_registry() -> None:
    assert set(config.STRATEGIES) == set(STRATEGIES)


def test_config_policy_choices_are_the_replay_registries() -> None:
    assert set(config.REACTIVE_POLICIES) == set(REACTIVE)
    assert set(config.OFFLINE_POLICIES) == set(OFFLINE)
    # federated_personalized is added by the replay when personalized models exist
    assert set(config.PREDICTIVE_POLICIES) | {"federated_personalized"} == set(PREDICTORS)


def test_local_layer_choices_are_the_head_arrays_every_kind_has() -> None:
    assert config.LOCAL_LAYERS == LOCAL_OK


def test_model_kind_choices_are_the_kind_registry() -> None:
    assert tuple(KINDS) == config.MODEL_KINDS


def _defaults(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("mirror_cls, sections", [(ServerSettings, (BASE.model, BASE.federated, BASE.features))])
def test_mirror_defaults_equal_the_config_base(mirror_cls: type, sections: tuple[object, ...]) -> None:
    same = {}
    for section in sections:
        for f in dataclasses.fields(section):  # type: ignore[arg-type]
            value = getattr(section, f.name)  # tuples cross the boundary comma-joined
            same.setdefault(f.name, ",".join(value) if isinstance(value, tuple) else value)
    drift = {k: (v, same[k]) for k, v in _defaults(mirror_cls).items() if k in same and same[k] != v}
    assert not drift, f"{mirror_cls.__name__} defaults differ from the config's (mirror, config): {drift}"


def test_cache_settings_defaults_equal_the_config_base() -> None:
    same = {f.name: getattr(BASE.cache, f.name) for f in dataclasses.fields(BASE.cache)}
    same["unit"] = BASE.cache.capacity_unit  # the one field named differently (passed explicitly)
    defaults = _defaults(CacheSettings)
    assert set(defaults) <= set(same), f"CacheSettings fields without a [cache] key: {set(defaults) - set(same)}"
    drift = {k: (v, same[k]) for k, v in defaults.items() if same[k] != v}
    assert not drift, f"CacheSettings defaults differ from the config's (mirror, config): {drift}"


def test_eviction_choices_are_the_cache_modes() -> None:
    eviction = {f.name: f for f in dataclasses.fields(config.CacheConfig)}["eviction"]
    assert set(eviction.metadata["choices"]) == set(EVICTIONS) == set(MODES)


def test_train_settings_carry_no_defaults_of_their_own() -> None:
    assert _defaults(TrainSettings) == {}


def test_mirror_names_a_field_without_a_config_key() -> None:
    @dataclasses.dataclass(frozen=True)
    class Partial:
        capacity: int
        no_such_key: int

    assert mirror(Partial, BASE.cache, no_such_key=1) == Partial(BASE.cache.capacity, 1)
    with pytest.raises(TypeError, match="no_such_key"):
        mirror(Partial, BASE.cache)


def test_the_device_tuple_is_defined_once() -> None:
    literal = re.compile(r"""["']TV["'],\s*["']mobile["']""")
    homes = [p.relative_to(ROOT).as_posix() for pkg in ("edge_nodes", "aggregator", "spark_features",
                                                        "simulation", "monitoring")
             for p in (ROOT / pkg).rglob("*.py") if literal.search(p.read_text())]
    assert homes == ["edge_nodes/devices.py"]
    assert DEVICES[0] == "TV"


def test_flower_app_config_declares_the_server_settings() -> None:
    """pyproject's [tool.flwr.app.config] (the deployment engine's run_config) mirrors ServerSettings."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(declared) == {f.name.replace("_", "-") for f in dataclasses.fields(ServerSettings)}
    drift = {k: (v, declared[k.replace("_", "-")]) for k, v in _defaults(ServerSettings).items()
             if declared[k.replace("_", "-")] != v}
    assert not drift, f"pyproject [tool.flwr.app.config] differs from ServerSettings defaults: {drift}"

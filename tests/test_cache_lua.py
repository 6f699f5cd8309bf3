"""The Lua library, fast and without Redis: luacheck, registered names, named argument fields."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from importlib.resources import files

import msgpack
import numpy as np
import pytest
import redis

from edge_nodes.cache.batch import CacheBatch
from edge_nodes.cache.edge_cache import EdgeCache
from edge_nodes.cache.library import LIBRARY, MODULES, library_source, lua_source, registered_functions
from edge_nodes.cache.modes import MODES
from edge_nodes.cache.redis_conn import EdgeNamespace
from edge_nodes.cache.settings import CacheSettings
from simulation.config import CacheConfig
from tests.conftest import ROOT, require

LUA_DIR = ROOT / "edge_nodes" / "cache" / "lua"


def _cache(eviction: str) -> EdgeCache:
    """An EdgeCache whose client never connects (nothing here talks to a server)."""
    ns = EdgeNamespace("edge-x", redis.Redis(port=1), "edge:edge-x:")
    return EdgeCache(ns, CacheSettings(capacity=4, eviction=eviction, prefetch_max_share=0.25, prefetch_price=0.0))


def _argument_map(eviction: str) -> dict[str, object]:
    cache = _cache(eviction)
    batch = CacheBatch(["A", "B"], [3, 5], ["U1", "U2"], ["C", "-"], [7, 0], k=1, pred_probs=[0.25, 0.0],
                       shadow_origin=np.array([3, 3]))
    return msgpack.unpackb(cache.arguments(cache.prepare(batch), 11, 2, 9))


def test_luacheck_passes() -> None:
    exe = shutil.which("luacheck")
    require(exe is not None, "luacheck", "apt-get install lua-check (what .ci/run does)")
    out = subprocess.run([str(exe), "--formatter", "plain", "--codes", str(LUA_DIR)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_fcall_name_is_registered_by_the_loaded_library() -> None:
    source = library_source()
    assert source.startswith(f"#!lua name={LIBRARY}\n")
    registered = registered_functions(source)
    assert source.count("redis.register_function") == len(registered)  # only literal names
    assert sorted(registered) == sorted(m.function for m in MODES.values())  # each once, none unused


def test_every_lua_file_is_in_the_library_and_packaged() -> None:
    assert sorted(p.name for p in LUA_DIR.glob("*.lua")) == sorted(MODULES)
    assert all((files("edge_nodes.cache") / "lua" / name).is_file() for name in MODULES)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"edge_nodes.cache" = ["lua/*.lua"]' in pyproject


def test_argument_map_is_named_and_hand_computed() -> None:
    got = _argument_map("demand")
    assert got == {
        "capacity": 4, "unit": "items", "prediction_ttl_s": 3600, "prefetch_budget": 1.0, "prefetch_cap": 1.0,
        "prefetch_on_hit": True, "origin_ratio": 1.0, "freq_half_life": 8000.0, "pred_half_life": 300.0, "pred_weight": 30.0,
        "evict_sample": 8, "history_entries": 20000, "admission": True, "prefetch_price": 0.0, "user_prefix": "edge:edge-x:user:",
        "k": 1, "items": ["A", "B"], "sizes": [3, 5], "users": ["U1", "U2"], "preds": ["C", "-"],
        "pred_sizes": [7, 0], "pred_probs": ["0.25", "0"], "pred_prob_values": [0.25, 0.0],
        "shadow_origin": [3, 3], "requested_bytes": 11, "prefetch_bytes": 2, "origin_bytes": 9,
        "price_scale": 1.0,
    }
    assert set(_argument_map("lru")) == set(got) - {"freq_half_life", "pred_half_life", "pred_weight",
                                                    "evict_sample", "history_entries", "admission",
                                                    "prefetch_price", "pred_probs", "pred_prob_values",
                                                    "price_scale"}


@pytest.mark.parametrize("eviction", sorted(MODES))
def test_lua_reads_exactly_the_fields_python_sends_and_its_header_lists_them(eviction: str) -> None:
    script = MODES[eviction].script
    text = lua_source(script)
    header = "".join(line for line in text.splitlines(keepends=True)[:30] if line.startswith("--"))
    sent = set(_argument_map(eviction))
    assert set(re.findall(r"\ba\.([a-z_0-9]+)", text)) == sent
    assert "KEYS" in header
    missing = sorted(f for f in sent if not re.search(rf"\b{f}\b", header))
    assert not missing, f"{script}'s header does not list {missing}"


def test_config_eviction_choices_are_the_modes() -> None:
    field = next(f for f in dataclasses.fields(CacheConfig) if f.name == "eviction")
    assert sorted(field.metadata["choices"]) == sorted(MODES)

"""The edge cache's server half: one Redis Functions library assembled from `lua/*.lua`.

Each `.lua` file is a chunk that takes its dependencies as the chunk's arguments (`...`) and
returns its exports, so luacheck can lint it alone; the library wraps every file in a
function and calls it with the modules it names. The function names live only in the Lua
(`redis.register_function('<name>', ...)`); `function_of` reads them from there.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from edge_nodes.errors import CacheLibraryError

LIBRARY = "edgecache"

# file -> the modules its chunk receives, in load order (a module's name is its file's stem)
MODULES: dict[str, tuple[str, ...]] = {
    "demand_core.lua": (),
    "lru.lua": (),
    "demand.lua": ("demand_core",),
}

_REGISTER = re.compile(r"redis\.register_function\(\s*'([A-Za-z_][A-Za-z0-9_]*)'")


def lua_source(name: str) -> str:
    """The text of one `.lua` file shipped with the package."""
    return (files("edge_nodes.cache") / "lua" / name).read_text(encoding="utf-8")


@cache
def library_source() -> str:
    """The whole library as FUNCTION LOAD takes it: the shebang, then every module in order."""
    parts = [f"#!lua name={LIBRARY}"]
    for name, deps in MODULES.items():
        stem = name.removesuffix(".lua")
        parts.append(f"local {stem} = (function(...)\n{lua_source(name)}end)({', '.join(deps)})")
    return "\n".join(parts) + "\n"


def registered_functions(source: str) -> list[str]:
    """The function names a Lua text registers (literal names only, in order)."""
    return _REGISTER.findall(source)


@cache
def function_of(script: str) -> str:
    """The one function `script` registers: the name to FCALL for it."""
    names = registered_functions(lua_source(script))
    if len(names) != 1:
        raise CacheLibraryError(f"{script} must register exactly one function with a literal name, found {names}")
    return names[0]

"""Settings that cross a boundary (server, edge cache), built from the config's same-named fields.

The privacy boundary hands the server and each edge plain dataclasses, never the experiment
config. `mirror` fills such a dataclass field by field from config sections with the same field
names, so a new key cannot be forgotten in a hand-written copy; only fields whose name or value
differ are passed explicitly. Every field must be covered: a mirror's own defaults are never
used by the pipeline (a fast test pins them to the config's base values for direct users).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def mirror(cls: type[T], *sections: Any, **explicit: Any) -> T:
    """cls(**values): `explicit` first, then same-named fields of `sections` in order."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = set(explicit) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    values = dict(explicit)
    for section in sections:
        own = {f.name for f in dataclasses.fields(section)}
        for name in names:
            if name not in values and name in own:
                values[name] = getattr(section, name)
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"{cls.__name__} fields {missing} have no same-named config key; pass them explicitly")
    return cls(**values)

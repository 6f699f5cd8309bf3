"""The model registry: `model.kind` -> the encoder that turns a history into a user state.

Each kind lives in its own file behind `Kind` (base.py); tests/test_model_kinds.py is the
contract suite every kind passes. To add one: a file with a `Kind` subclass and its `KIND`,
an entry here; config.MODEL_KINDS is pinned to these keys.
"""

from __future__ import annotations

from edge_nodes.errors import ModelFileError
from edge_nodes.learning.kinds import gru4rec, pooled, sasrec
from edge_nodes.learning.kinds.base import HEAD, LEAD, LOCAL_OK, Kind

KINDS: dict[str, Kind] = {k.name: k for k in (pooled.KIND, gru4rec.KIND, sasrec.KIND)}

__all__ = ["HEAD", "KINDS", "LEAD", "LOCAL_OK", "Kind", "get_kind"]


def get_kind(name: str) -> Kind:
    """The kind called `name`; an unknown name raises naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise ModelFileError(f"model kind {name!r} is unknown; choose from {', '.join(KINDS)}") from None

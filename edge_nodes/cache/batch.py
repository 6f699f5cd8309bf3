"""What crosses the FCALL boundary: a batch of requests in, its outcome back, and the argument map.

The server function takes one msgpack map with named fields. The map is packed in parts as
their values become known (the cache's settings once, a batch's requests when it is
prepared, the byte counters when it is sent) and framed with its header at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np


@dataclass(frozen=True)
class CacheBatch:
    """A batch of one edge's requests, in order, with k predictions per request."""

    items: Sequence[str]                 # content id per request
    sizes: Sequence[int]                 # its size in bytes
    users: Sequence[str]                 # the requesting user
    preds: Sequence[str] = ()            # k predicted content ids per request ('-' = none)
    pred_sizes: Sequence[int] = ()       # their sizes
    k: int = 0
    pred_probs: Sequence[float] | np.ndarray | None = None  # their probabilities (demand mode; None = 1)
    shadow_origin: Sequence[int] | np.ndarray | None = None  # the shadow's origin bytes through each request


@dataclass(frozen=True)
class BatchOutcome:
    """What the server did for one batch: per-request hits and prefetch counters."""

    hits: np.ndarray
    prefetched: int
    prefetched_bytes: int
    prefetch_used: int
    prefetch_wasted: int

    @classmethod
    def of_reply(cls, reply: Sequence[Any]) -> BatchOutcome:
        """Decode the function's reply {flags, prefetched, prefetched bytes, used, wasted}."""
        flags, pf_n, pf_bytes, pf_used, wasted = reply
        hits = np.frombuffer(flags, dtype=np.uint8) == ord("1") if flags else np.zeros(0, bool)
        return cls(hits, int(pf_n), int(pf_bytes), int(pf_used), int(wasted))


def _plain(x: Any) -> Any:
    return x.tolist()  # numpy scalars and arrays


@dataclass(frozen=True)
class MapFields:
    """Named fields of the argument map, packed as msgpack key/value pairs without the header."""

    count: int
    data: bytes

    @classmethod
    def of(cls, fields: Mapping[str, object]) -> MapFields:
        packer = msgpack.Packer(default=_plain)
        return cls(len(fields), b"".join(packer.pack(k) + packer.pack(v) for k, v in fields.items()))

    def __add__(self, other: MapFields) -> MapFields:
        return MapFields(self.count + other.count, self.data + other.data)

    def packed(self) -> bytes:
        """The complete msgpack map (what the Lua's `cmsgpack.unpack(ARGV[1])` reads)."""
        return msgpack.Packer().pack_map_header(self.count) + self.data

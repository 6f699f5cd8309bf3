"""The cache's eviction modes behind one interface: keys, server function, argument encoder, entry decoder.

`lru` is exactly libCacheSim's LRU when prefetching is off; `demand` keeps the entries with
the highest decayed frequency plus predicted demand (see lua/demand_core.lua). `MODES` maps
the config's `cache.eviction` values to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import redis

from edge_nodes.cache.batch import CacheBatch
from edge_nodes.cache.library import function_of
from edge_nodes.cache.settings import CacheSettings

Entry = tuple[str, int, bool]  # (content id, size, still an unrequested prefetch)

# CacheSettings fields both modes' functions read, under the same names
SHARED_SETTINGS = ("capacity", "unit", "prediction_ttl_s", "prefetch_budget", "prefetch_cap", "prefetch_on_hit",
                   "origin_ratio")


class EvictionMode(ABC):
    """One eviction mode: its keys, the script whose function serves a batch, and its codecs."""

    name: ClassVar[str]
    key_names: ClassVar[tuple[str, ...]]  # the function's KEYS, in order; the meta hash last
    script: ClassVar[str]                 # the lua/ file registering the batch function
    settings_fields: ClassVar[tuple[str, ...]] = SHARED_SETTINGS

    @property
    def function(self) -> str:
        """The name to FCALL (read from the script's `redis.register_function`)."""
        return function_of(self.script)

    def settings_args(self, s: CacheSettings) -> dict[str, object]:
        """The argument map's settings fields (named as in CacheSettings)."""
        return {f: getattr(s, f) for f in self.settings_fields}

    def counter_args(self, requested_bytes: int, prefetch_bytes: int, origin_bytes: int,
                     price_scale: float) -> dict[str, object]:
        """The argument map's running counters, packed when the batch is sent."""
        return {"requested_bytes": requested_bytes, "prefetch_bytes": prefetch_bytes, "origin_bytes": origin_bytes}

    def batch_args(self, b: CacheBatch) -> dict[str, object]:
        """The argument map's per-batch fields: msgpack arrays of the requests and predictions
        (and the shadow's origin bytes per request, when the edge runs one)."""
        out: dict[str, object] = {"k": b.k, "items": b.items, "sizes": b.sizes, "users": b.users,
                                  "preds": b.preds, "pred_sizes": b.pred_sizes}
        if b.shadow_origin is not None:
            out["shadow_origin"] = b.shadow_origin
        return out

    @abstractmethod
    def entries(self, client: redis.Redis, keys: Sequence[str]) -> list[Entry]:
        """Every cached entry, read from the mode's keys."""

    def index_consistent(self, client: redis.Redis, keys: Sequence[str], entries: int) -> bool:
        """Whether the mode's eviction index lists exactly the cached entries."""
        return True


class LruMode(EvictionMode):
    """LRU: one zset ordered by last use; a member is '<content id>|<size>'."""

    name = "lru"
    key_names = ("lru", "meta")
    script = "lru.lua"

    def entries(self, client: redis.Redis, keys: Sequence[str]) -> list[Entry]:
        members: list[tuple[bytes, float]] = client.zrange(keys[0], 0, -1, withscores=True)  # type: ignore[assignment]
        return [(m.decode().rsplit("|", 1)[0], int(m.rsplit(b"|", 1)[1]), int(s) % 2 == 1) for m, s in members]


class DemandMode(EvictionMode):
    """Demand-aware: retention value = decayed request frequency + predicted demand of the active users."""

    name = "demand"
    key_names = ("dk", "ent", "fq", "dm", "dmeta")
    script = "demand.lua"
    settings_fields = SHARED_SETTINGS + ("freq_half_life", "pred_half_life", "pred_weight", "evict_sample",
                                         "history_entries", "admission", "prefetch_price")

    def counter_args(self, requested_bytes: int, prefetch_bytes: int, origin_bytes: int,
                     price_scale: float) -> dict[str, object]:
        """Adds the price multiplier of the edge's origin controller (shadow.OriginLimit)."""
        return super().counter_args(requested_bytes, prefetch_bytes, origin_bytes, price_scale) | {
            "price_scale": price_scale}

    def batch_args(self, b: CacheBatch) -> dict[str, object]:
        """Adds the probabilities as '%.6g' text (kept in `user:<id>`) and the numbers that text reads as."""
        text, values = format_probs(b.pred_probs if b.pred_probs is not None else [1.0] * len(b.preds))
        return super().batch_args(b) | {"pred_probs": text, "pred_prob_values": values}

    def entries(self, client: redis.Redis, keys: Sequence[str]) -> list[Entry]:
        raw: dict[bytes, bytes] = client.hgetall(keys[1])  # type: ignore[assignment]
        return [(k.decode(), int(v) // 2, int(v) % 2 == 1) for k, v in raw.items()]

    def index_consistent(self, client: redis.Redis, keys: Sequence[str], entries: int) -> bool:
        return client.zcard(keys[0]) == entries


MODES: dict[str, EvictionMode] = {m.name: m for m in (LruMode(), DemandMode())}
ALL_KEY_NAMES = tuple(dict.fromkeys(k for m in MODES.values() for k in m.key_names))


def format_probs(probs: Sequence[float] | np.ndarray) -> tuple[list[str], list[float]]:
    """Each probability as '%.6g' text and as float(text), converting each distinct value once."""
    p = np.ascontiguousarray(probs, dtype=np.float64)
    bits, inv = np.unique(p.view(np.int64), return_inverse=True)
    if 4 * bits.size > p.size:  # mostly distinct (a model's softmax): no gain from sharing
        text = [f"{x:.6g}" for x in p.tolist()]
        return text, [float(t) for t in text]
    uniq = [f"{x:.6g}" for x in bits.view(np.float64).tolist()]
    inv = inv.ravel()
    return (np.array(uniq, dtype=object)[inv].tolist(),
            np.array([float(t) for t in uniq], dtype=np.float64)[inv].tolist())

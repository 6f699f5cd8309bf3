"""What an edge is handed about its cache: plain values, built from the config's [cache] section.

The replay builds it with `simulation.mirrors.mirror` from the same-named `[cache]` keys
(`unit` is `cache.capacity_unit`); its defaults are the config's (pinned by tests/test_one_home.py),
so a direct user gets what the pipeline runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_nodes.errors import CacheConfigError

SHADOWS = ("lru", "lfu", "arc", "s3fifo", "wtinylfu")  # causal libCacheSim policies (shadow.py runs them)
EVICTIONS = ("demand", "lru")  # the eviction modes (`modes.MODES` holds one object per name)


@dataclass(frozen=True)
class CacheSettings:
    """What an edge is handed about its cache (plain values parsed from the config)."""

    capacity: int
    unit: str = "items"              # items | bytes
    prediction_ttl_s: int = 3600
    prefetch_budget: float = 1.0     # prefetched bytes <= budget * requested bytes
    prefetch_max_share: float = 0.5  # unused prefetches may fill at most this share
    prefetch_on_hit: bool = True     # refresh and prefetch after hits too, not only misses
    eviction: str = "demand"         # demand | lru
    freq_half_life: float = 8000.0   # demand: half-life of request counts, in requests at the edge
    pred_half_life: float = 300.0    # demand: half-life of predicted demand, in requests
    pred_weight: float = 30.0        # demand: value of one predicted view (probability 1) vs one request
    evict_sample: int = 8            # demand: lowest-key entries compared exactly per eviction
    admission: bool = True           # demand: a miss is cached only if it beats the eviction victim
    history_entries: int = 20000     # demand: items whose decayed frequency is remembered
    prefetch_price: float = 0.8      # demand: fetch only if expected requests (demand) x size > price x size
    origin_shadow: str = "best"      # prefetch only while origin bytes <= origin_ratio x this reactive shadow's
    origin_ratio: float = 1.0        # (shadow.py); origin_shadow "none" = no such limit
    price_gain: float = 30.0         # demand: the price follows origin vs shadow bytes (shadow.OriginLimit); 0 = fixed

    def __post_init__(self) -> None:
        if self.unit not in ("items", "bytes"):
            raise CacheConfigError(f"cache unit {self.unit!r} is not allowed; use items or bytes")
        if self.eviction not in EVICTIONS:
            raise CacheConfigError(f"cache eviction {self.eviction!r} is not allowed; use {' or '.join(EVICTIONS)}")
        if min(self.freq_half_life, self.pred_half_life) < 1 or self.evict_sample < 1:
            raise CacheConfigError("cache half-lives and cache.evict_sample must be >= 1")
        if self.capacity < 1:
            raise CacheConfigError(f"cache capacity {self.capacity} must be >= 1")
        if self.origin_shadow not in SHADOWS + ("best", "none"):
            raise CacheConfigError(f"cache.origin_shadow {self.origin_shadow!r} is not allowed; use one of "
                                   f"{', '.join(SHADOWS)}, best or none")
        if self.price_gain < 0:
            raise CacheConfigError(f"cache.price_gain {self.price_gain} must be >= 0 (0 = a fixed prefetch price)")
        if self.origin_ratio <= 0:
            raise CacheConfigError(f"cache.origin_ratio {self.origin_ratio} must be > 0 (origin_shadow = none "
                                   "turns the limit off)")
        if not 0.0 <= self.prefetch_max_share <= 1.0:
            raise CacheConfigError("cache.prefetch_max_share must be within 0..1")

    @property
    def prefetch_cap(self) -> float:
        """Weight (items or bytes) that unused prefetched entries may occupy."""
        return self.prefetch_max_share * self.capacity

"""What an edge counts while serving: hits, bytes, prefetches, simulated latency, outages.

Latency is simulated from three outcomes, so mean and p99 follow exactly from the counts
(no per-request arrays): a hit costs the edge latency; a miss the edge plus the origin
latency; a request during a Redis outage goes straight to the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Latency:
    """Simulated one-way latencies in milliseconds."""

    edge_ms: float = 5.0
    origin_ms: float = 80.0


@dataclass
class DegradedSpan:
    """A run of consecutive requests served without Redis (first/last stream positions)."""

    first_request: int
    last_request: int
    first_ts: str
    last_ts: str
    requests: int

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class EdgeStats:
    """Counters of one policy on one edge (or summed over edges)."""

    requests: int = 0
    hits: int = 0
    errors: int = 0
    requested_bytes: int = 0
    hit_bytes: int = 0
    prefetched: int = 0
    prefetch_bytes: int = 0
    prefetch_used: int = 0
    prefetch_wasted: int = 0
    spans: list[DegradedSpan] = field(default_factory=list)

    @property
    def origin_bytes(self) -> int:
        """Bytes fetched from the origin: misses (outages included) plus prefetches."""
        return self.requested_bytes - self.hit_bytes + self.prefetch_bytes

    def add(self, other: EdgeStats) -> EdgeStats:
        """Sum counters in place (for the overall row); spans are kept per edge only."""
        for f in fields(self):
            if f.name != "spans":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def record_outage(self, first: int, n: int, first_ts: str, last_ts: str) -> None:
        """Count n requests at stream positions first.. as degraded, merging adjacent runs."""
        last = self.spans[-1] if self.spans else None
        if last is not None and last.last_request + 1 == first:
            last.last_request, last.last_ts, last.requests = first + n - 1, last_ts, last.requests + n
        else:
            self.spans.append(DegradedSpan(first, first + n - 1, first_ts, last_ts, n))

    def latency(self, lat: Latency) -> tuple[float, float]:
        """(mean, p99) simulated latency in ms over all requests (nearest-rank p99)."""
        if self.requests == 0:
            return 0.0, 0.0
        misses = self.requests - self.hits - self.errors
        outcomes = sorted([(lat.edge_ms, self.hits), (lat.origin_ms, self.errors),
                           (lat.edge_ms + lat.origin_ms, misses)])
        mean = sum(v * n for v, n in outcomes) / self.requests
        rank, seen = -(-99 * self.requests // 100), 0  # ceil(0.99 n)
        for value, n in outcomes:
            seen += n
            if seen >= rank:
                return round(mean, 4), value
        return round(mean, 4), outcomes[-1][0]

    def summary(self, lat: Latency) -> dict[str, Any]:
        """The results.json row: DESIGN.md's keys plus the raw counters behind them."""
        mean, p99 = self.latency(lat)
        return {
            "hit_ratio": _ratio(self.hits, self.requests),
            "byte_hit_ratio": _ratio(self.hit_bytes, self.requested_bytes),
            "requests": self.requests,
            "prefetch_bytes": self.prefetch_bytes,
            "prefetch_precision": _ratio(self.prefetch_used, self.prefetched),
            "origin_bytes": self.origin_bytes,
            "latency_mean_ms": mean,
            "latency_p99_ms": p99,
            "hits": self.hits,
            "errors": self.errors,
            "requested_bytes": self.requested_bytes,
            "prefetched": self.prefetched,
            "prefetch_used": self.prefetch_used,
        }


def _ratio(a: int, b: int) -> float:
    return round(a / b, 6) if b else 0.0

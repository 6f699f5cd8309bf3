"""results.json `federated.dp`: the DP wrapper's settings plus the epsilon it gives, at a stated delta.

The delta default is 1/number of users (federated.dp_delta = 0), as the issue asks. The unit of
privacy is nevertheless one edge's update (edge-level DP), so the figure says `unit: "edge"`;
docs/federated.md says what the guarantee covers and what it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from aggregator.privacy import MEAN_STRATEGIES, account
from aggregator.settings import ServerSettings
from aggregator.strategies import sampled_edges


def resolve_delta(dp_delta: float, users: int) -> tuple[float, str]:
    """(delta, where it came from): federated.dp_delta, or 1/users when that is 0."""
    if dp_delta > 0:
        return dp_delta, "federated.dp_delta"
    return 1.0 / max(users, 2), "1/number of users (federated.dp_delta = 0)"


def largest_edge_share(examples: Path, edges: list[str], sampled: int) -> float:
    """The largest weight one edge can get in FedAvg's num-examples average of `sampled` edges."""
    counts = sorted(_rows(examples / f"edge_id={e}") for e in edges)
    if not counts or sum(counts) == 0:
        return 1.0 / max(sampled, 1)
    big = counts[-1]
    return big / max(big + sum(counts[:max(sampled - 1, 0)]), 1)


def _rows(folder: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


def dp_summary(settings: dict[str, Any], s: ServerSettings, dp_delta: float, users: int,
               rounds_run: int, largest_share: float) -> dict[str, Any]:
    """`settings` (aggregator.strategies.dp_settings) plus epsilon, delta and what they assume."""
    if not settings.get("enabled"):
        return settings
    m = sampled_edges(s)
    delta, delta_source = resolve_delta(dp_delta, users)
    q = min(m / s.num_edges, 1.0)
    out = {**settings, **account(s.dp_noise, q, rounds_run, delta).to_dict(), "delta_source": delta_source}
    # FedAvg weights updates by num-examples; the noise is calibrated to an unweighted mean
    # (sensitivity C/m). An edge with weight w > 1/m is protected by noise z/(m*w) instead.
    z_big = s.dp_noise / max(m * largest_share, 1.0)
    out["epsilon_holds"] = s.strategy in MEAN_STRATEGIES
    if not out["epsilon_holds"]:
        out["why_not"] = (f"{s.strategy} does not aggregate by a mean of the clipped updates, so the noise "
                          f"is not calibrated to its sensitivity; use {' or '.join(MEAN_STRATEGIES)} with DP")
    out["aggregation"] = ("the noise assumes an unweighted mean of clipped updates; the strategy "
                          "weights edges by num-examples")
    out["largest_edge"] = {"weight": round(largest_share, 6), "noise_multiplier": round(z_big, 6),
                           "epsilon": account(z_big, q, rounds_run, delta).to_dict()["epsilon"]}
    return out

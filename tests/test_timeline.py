"""The cumulative hit-ratio timeline: hourly counts folded over edges, sampled evenly."""

from __future__ import annotations

import numpy as np

from simulation.replay.timeline import Timeline


def _ts(hours: list[int]) -> np.ndarray:
    return np.datetime64("2025-04-22T00", "h") + np.array(hours, dtype="timedelta64[h]")


def test_cumulative_ratio_over_two_edges_by_hour() -> None:
    tl = Timeline()
    tl.add("lru", _ts([0, 0, 1, 3]), np.array([False, True, True, False]))  # edge-00
    tl.add("lru", _ts([1, 2]), np.array([True, True]))                      # edge-01
    out = tl.summary(points=10)
    assert out["t"][0] == "2025-04-22T00" and out["t"][-1] == "2025-04-22T03"
    assert out["days"] == [0.0, round(1 / 24, 4), round(2 / 24, 4), 0.125]
    # hour 0: 1/2; hour 1: 3/4; hour 2: 4/5; hour 3: 4/6
    assert out["policies"]["lru"] == [0.5, 0.75, 0.8, round(4 / 6, 6)]


def test_sampling_keeps_at_most_the_requested_points() -> None:
    tl = Timeline()
    hours = list(range(0, 500))
    tl.add("belady", _ts(hours), np.ones(500, dtype=bool))
    out = tl.summary(points=50)
    assert len(out["t"]) == len(out["policies"]["belady"]) <= 50
    assert out["policies"]["belady"] == [1.0] * len(out["t"])
    assert Timeline().summary() == {}

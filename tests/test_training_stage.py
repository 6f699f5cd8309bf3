"""The train stage's round times (results.json federated.round_s), from the round records."""

from __future__ import annotations

from simulation.training.stage import round_times


def test_round_times_mean_and_per_round() -> None:
    assert round_times([4.0, 5.5, 6.0004]) == {"mean": 5.167, "per_round": [4.0, 5.5, 6.0]}

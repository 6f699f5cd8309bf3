"""Small hand-checked pieces of the generator: sampling, binge chains, statistics, dirty quotas."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.workload.dirty import dirty_target
from simulation.workload.events import _chain
from simulation.workload.sampling import GroupedSampler, row_choice
from simulation.workload.stats import jensen_shannon, mean_pairwise_jsd, top_share, zipf_exponent


def test_grouped_sampler_draws_inside_each_group_by_weight() -> None:
    # group 0: outcomes 0..2 with weights 1, 0, 3; group 1: outcomes 3..4 all zero (uniform); group 2: outcome 5
    s = GroupedSampler(np.array([1.0, 0.0, 3.0, 0.0, 0.0, 2.0]), np.array([0, 3, 5]))
    assert s.draw(np.array([0, 0, 0]), np.array([0.0, 0.24, 0.25])).tolist() == [0, 0, 2]
    assert s.draw(np.array([0]), np.array([0.999999])).tolist() == [2]
    assert s.draw(np.array([1, 1]), np.array([0.1, 0.6])).tolist() == [3, 4]
    assert s.draw(np.array([2, 2]), np.array([0.0, 0.99])).tolist() == [5, 5]
    draws = s.draw(np.zeros(40_000, int), np.random.default_rng(0).random(40_000))
    assert 1 not in draws and abs((draws == 2).mean() - 0.75) < 0.01


def test_row_choice_uses_each_rows_own_cumulative() -> None:
    cum = np.array([[0.5, 1.0], [0.0, 1.0]])
    assert row_choice(cum, np.array([0, 0, 1]), np.array([0.4, 0.6, 0.0])).tolist() == [0, 1, 1]


def test_chain_continues_series_and_falls_back_to_fresh_picks() -> None:
    # row 0 a movie; rows 1..3 one series (last row 3); row 4 a movie
    last_row = np.array([0, 3, 3, 3, 4])
    fresh_pick = np.array([2, 0, 0, 4, 1, 0])
    wants_fresh = np.array([True, False, False, True, False, False])
    item, fresh = _chain(fresh_pick, wants_fresh, last_row)
    # 2 -> 3 (next episode) -> series over, so position 2 takes its fresh pick 0 (a movie)
    # -> 4 fresh -> movie, so position 4 takes its pick 1 -> 2 (next episode)
    assert item.tolist() == [2, 3, 0, 4, 1, 2]
    assert fresh.tolist() == [True, False, True, True, True, False]


def test_chain_pathological_runs_end_in_fresh_picks() -> None:
    n = 200  # every event wants to continue, but every pick is a movie
    item, fresh = _chain(np.zeros(n, int), np.r_[True, np.zeros(n - 1, bool)], np.array([0]))
    assert item.tolist() == [0] * n and fresh.all()


def test_jensen_shannon_bounds() -> None:
    assert jensen_shannon(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(0.0)
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert mean_pairwise_jsd(np.array([[1, 0], [0, 1], [0, 0]])) == pytest.approx(1.0)


def test_skew_statistics_on_exact_zipf() -> None:
    counts = np.round(1e6 / np.arange(1, 1001) ** 1.0)
    assert zipf_exponent(counts) == pytest.approx(1.0, abs=0.01)
    assert top_share(np.array([90, 10] + [0] * 98)) == pytest.approx(0.9)


def test_dirty_quota_adds_up_exactly_over_chunks() -> None:
    total, events, done, injected = 37, 1000, 0, 0
    for size in (333, 333, 334):
        done += size
        injected += dirty_target(total, done, events, injected)
    assert injected == 37

"""The epsilon results.json states for the DP wrapper, checked against independently computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from flwr.serverapp.strategy import FedAvg

from aggregator.privacy import MEAN_STRATEGIES, RDP_ORDERS, account
from aggregator.settings import ServerSettings
from aggregator.strategies import STRATEGIES, dp_settings
from simulation.config import load_config
from simulation.errors import ConfigError
from simulation.report.federated import privacy_line
from simulation.training.privacy import dp_summary, largest_edge_share, resolve_delta
from tests.fixtures_federated import SyntheticRun


def _rdp_gaussian_epsilon(sigma: float, rounds: int, delta: float) -> float:
    """By hand: RDP of the Gaussian mechanism is alpha/(2 sigma^2) per release (Mironov 2017), composed
    additively; to (eps, delta) with Proposition 12 of Canonne-Kamath-Steinke (arXiv 2004.00010)."""
    best = math.inf
    for a in RDP_ORDERS:
        rdp = rounds * a / (2 * sigma ** 2)
        best = min(best, rdp + math.log1p(-1 / a) - math.log(delta * a) / (a - 1))
    return max(best, 0.0)


def _exact_gaussian_epsilon(sigma: float, rounds: int, delta: float) -> float:
    """The tight epsilon of `rounds` Gaussian releases (a mu-GDP mechanism, mu = sqrt(T)/sigma;
    Balle & Wang 2018): solve delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) by bisection."""
    mu = math.sqrt(rounds) / sigma

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    def delta_of(eps: float) -> float:
        return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)

    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


@pytest.mark.parametrize(("sigma", "rounds", "delta"), [(1.0, 10, 1e-5), (2.0, 3, 1 / 4000), (0.8, 50, 1e-3)])
def test_full_participation_matches_the_gaussian_rdp_closed_form(sigma: float, rounds: int, delta: float) -> None:
    acc = account(sigma, 1.0, rounds, delta)
    assert acc.epsilon == pytest.approx(_rdp_gaussian_epsilon(sigma, rounds, delta), rel=1e-9)
    # RDP is an upper bound, and not a loose one: within 30% of the tight value.
    exact = _exact_gaussian_epsilon(sigma, rounds, delta)
    assert exact <= acc.epsilon <= 1.3 * exact
    assert acc.epsilon_without_sampling == acc.epsilon


def test_one_release_at_sigma_one() -> None:
    """Hand-checked: T=1, sigma=1, delta=1e-5; the best integer order is 5:
    5/2 + ln(4/5) - ln(5e-5)/4 = 2.5 - 0.22314 + 2.47587 = 4.75273 (order 6 gives 4.76191)."""
    acc = account(1.0, 1.0, 1, 1e-5)
    assert acc.rdp_order == 5
    assert acc.epsilon == pytest.approx(4.75273, abs=1e-4)


def test_sampling_gives_credit_and_more_rounds_cost_more() -> None:
    full, sampled = account(1.0, 1.0, 20, 1e-4), account(1.0, 0.25, 20, 1e-4)
    assert sampled.epsilon < full.epsilon == sampled.epsilon_without_sampling
    assert account(1.0, 0.25, 40, 1e-4).epsilon > sampled.epsilon
    assert account(1.0, 1.0, 0, 1e-4).epsilon == 0.0
    with pytest.raises(ValueError, match="0 < delta < 1"):
        account(1.0, 1.0, 3, 0.0)


def test_mean_strategies_are_those_flower_aggregates_by_fedavgs_mean(synthetic_run: SyntheticRun,
                                                                    tmp_path: Path) -> None:
    s = ServerSettings(model_dir=str(tmp_path), n_items=synthetic_run.n_items, history_len=3, num_edges=7)
    mean = {name for name, make in STRATEGIES.items()
            if type(make(s)).aggregate_train is FedAvg.aggregate_train}
    assert mean == set(MEAN_STRATEGIES)


def test_delta_defaults_to_one_over_users_and_is_a_checked_key() -> None:
    assert resolve_delta(0.0, 4000) == (1 / 4000, "1/number of users (federated.dp_delta = 0)")
    assert resolve_delta(1e-6, 4000)[0] == 1e-6
    assert load_config(None).federated.dp_delta == 0.0
    with pytest.raises(ConfigError, match="federated.dp_delta"):
        load_config(None, ["federated.dp_delta=0.9"])


def test_results_section_states_epsilon_delta_and_the_unit(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    s = ServerSettings(model_dir=str(tmp_path), n_items=synthetic_run.n_items, history_len=3,
                       num_edges=len(synthetic_run.edges), dp_clip=1.0, dp_noise=1.0, rounds=5)
    share = largest_edge_share(synthetic_run.examples, list(synthetic_run.edges), len(synthetic_run.edges))
    counts = [pq.ParquetDataset(synthetic_run.examples / f"edge_id={e}").read().num_rows for e in synthetic_run.edges]
    assert share == pytest.approx(max(counts) / sum(counts))
    dp = dp_summary(dp_settings(s), s, 0.0, 2000, 5, share)
    assert {"epsilon", "delta", "accountant", "noise_multiplier", "sampling_rate", "rounds"} <= set(dp)
    assert (dp["unit"], dp["delta"], dp["rounds"], dp["sampling_rate"], dp["epsilon_holds"]) == \
        ("edge", 1 / 2000, 5, 1.0, True)
    assert dp["epsilon"] == pytest.approx(_rdp_gaussian_epsilon(1.0, 5, 1 / 2000), rel=1e-6)
    # The largest edge's weight in the num-examples mean is above 1/m: its noise is smaller.
    assert dp["largest_edge"]["noise_multiplier"] == pytest.approx(1.0 / (len(counts) * share), rel=1e-5)
    assert dp["largest_edge"]["epsilon"] >= dp["epsilon"]
    line = privacy_line(dp)
    assert f"{dp['epsilon']:.4f}" in line and "Edge-level" in line
    krum = dp_summary(dp_settings(s), ServerSettings(**{**s.__dict__, "strategy": "krum"}), 0.0, 2000, 5, share)
    assert not krum["epsilon_holds"] and "no epsilon holds" in privacy_line(krum)
    assert dp_summary({"enabled": False}, s, 0.0, 2000, 5, share) == {"enabled": False}

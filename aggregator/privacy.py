"""The privacy the DP wrapper gives, as (epsilon, delta): Google's dp-accounting RDP accountant.

The mechanism is Flower's server-side fixed clipping (aggregator/strategies.py): each sampled
edge's update to the shared arrays is clipped to L2 norm C, the updates are averaged and
Gaussian noise of stdev z*C/m is added (z = federated.dp_noise, m = sampled edges). One round
is a sampled Gaussian mechanism with noise multiplier z and sampling rate q = m / edges; the
accountant composes it over the rounds run. The unit of privacy is one edge's whole update
(edge-level DP), not one user: docs/federated.md says what that does and does not cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dp_accounting
from dp_accounting import rdp

# Strategies whose aggregate is FedAvg's mean (pinned to Flower's classes by a test): the noise
# z*C/m is calibrated to a mean of m clipped updates. A median, Krum or a server optimizer has a
# different sensitivity, so the wrapper's epsilon does not hold for them.
MEAN_STRATEGIES = ("fedavg", "fedprox")

# Integer orders only: dp-accounting's fractional orders below 2 fail to converge for large q
# (and log a warning each); integer orders use its exact binomial expansion.
RDP_ORDERS: tuple[int, ...] = (*range(2, 65), 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024)


@dataclass(frozen=True)
class DpAccount:
    """What results.json `federated.dp` states about one run's privacy."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sampling_rate: float
    rounds: int
    rdp_order: float
    epsilon_without_sampling: float

    def to_dict(self) -> dict[str, Any]:
        return {"epsilon": round(self.epsilon, 6), "delta": self.delta, "accountant": "rdp (dp-accounting)",
                "noise_multiplier": self.noise_multiplier, "sampling_rate": self.sampling_rate,
                "rounds": self.rounds, "unit": "edge", "rdp_order": self.rdp_order,
                "epsilon_without_sampling": round(self.epsilon_without_sampling, 6)}


def _epsilon(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> tuple[float, float]:
    """(epsilon, best order) of `rounds` Poisson-sampled Gaussian releases at `delta`."""
    step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        step = dp_accounting.PoissonSampledDpEvent(sampling_rate, step)
    accountant = rdp.RdpAccountant(orders=list(RDP_ORDERS))
    accountant.compose(dp_accounting.SelfComposedDpEvent(step, rounds))
    eps, order = accountant.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


def account(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> DpAccount:
    """Epsilon at `delta` after `rounds` releases with noise multiplier z and sampling rate q.

    Flower samples a fixed number of edges per round; the subsampled figure models it as Poisson
    sampling with the same rate (the usual DP-FedAvg accounting). `epsilon_without_sampling`
    gives no credit for sampling at all (Flower's own accountant's only mode for this wrapper).
    """
    if noise_multiplier <= 0 or not 0 < sampling_rate <= 1 or rounds < 0 or not 0 < delta < 1:
        raise ValueError(f"cannot account z={noise_multiplier}, q={sampling_rate}, rounds={rounds}, "
                         f"delta={delta}: need z > 0, 0 < q <= 1, rounds >= 0, 0 < delta < 1")
    if rounds == 0:
        return DpAccount(0.0, delta, noise_multiplier, sampling_rate, 0, 0.0, 0.0)
    eps, order = _epsilon(noise_multiplier, sampling_rate, rounds, delta)
    full = eps if sampling_rate == 1.0 else _epsilon(noise_multiplier, 1.0, rounds, delta)[0]
    return DpAccount(eps, delta, noise_multiplier, sampling_rate, rounds, order, full)

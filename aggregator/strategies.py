"""Strategy registry: config names -> Flower's own strategy classes with config values.

Every strategy samples `fraction_train` of the connected edges (at least `min_nodes`) and
evaluates on all of them. With `dp_noise > 0` the strategy is wrapped in Flower's
server-side fixed-clipping differential-privacy wrapper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from aggregator.errors import StrategyConfigError
from aggregator.settings import ServerSettings


def _sampling(s: ServerSettings) -> dict[str, Any]:
    return {"fraction_train": s.fraction_train, "fraction_evaluate": 1.0,
            "min_train_nodes": s.min_nodes, "min_evaluate_nodes": s.min_nodes,
            "min_available_nodes": s.min_nodes}


def _fedopt(cls: type) -> Callable[[ServerSettings], Strategy]:
    return lambda s: cls(**_sampling(s), eta=s.server_lr, eta_l=s.lr)  # type: ignore[no-any-return]


def _trimmed(s: ServerSettings) -> Strategy:
    if not 0.0 <= s.trimmed_beta < 0.5:
        raise StrategyConfigError(f"federated.trimmed_beta = {s.trimmed_beta} must be in [0, 0.5) "
                                  "for fedtrimmedavg")
    return FedTrimmedAvg(**_sampling(s), beta=s.trimmed_beta)


def _bulyan(s: ServerSettings) -> Strategy:
    need = 4 * s.byzantine_nodes + 3
    if s.num_edges < need:
        raise StrategyConfigError(f"bulyan needs at least 4*federated.byzantine_nodes+3 = {need} edges; "
                                  f"this run has {s.num_edges}: lower byzantine_nodes or pick krum")
    return Bulyan(**_sampling(s), num_malicious_nodes=s.byzantine_nodes)


STRATEGIES: dict[str, Callable[[ServerSettings], Strategy]] = {
    "fedavg": lambda s: FedAvg(**_sampling(s)),
    "fedprox": lambda s: FedProx(**_sampling(s), proximal_mu=s.proximal_mu),
    "fedadam": _fedopt(FedAdam),
    "fedyogi": _fedopt(FedYogi),
    "fedadagrad": _fedopt(FedAdagrad),
    "fedavgm": lambda s: FedAvgM(**_sampling(s), server_learning_rate=1.0,
                                 server_momentum=s.server_momentum),
    "fedmedian": lambda s: FedMedian(**_sampling(s)),
    "fedtrimmedavg": _trimmed,
    "krum": lambda s: Krum(**_sampling(s), num_malicious_nodes=s.byzantine_nodes),
    "bulyan": _bulyan,
}


def sampled_edges(s: ServerSettings) -> int:
    """How many edges a training round samples (Flower's rule: fraction, at least min_nodes)."""
    return max(int(s.num_edges * s.fraction_train), s.min_nodes)


def dp_settings(s: ServerSettings) -> dict[str, Any]:
    """The privacy settings as reported in results.json."""
    if s.dp_noise <= 0:
        return {"enabled": False}
    n = sampled_edges(s)
    return {"enabled": True, "mechanism": "central DP, server-side fixed clipping (Flower)",
            "clipping_norm": s.dp_clip, "noise_multiplier": s.dp_noise, "num_sampled_edges": n,
            "noise_stdev": s.dp_noise * s.dp_clip / n, "rounds": s.rounds}


def build_strategy(s: ServerSettings) -> Strategy:
    """The Flower strategy named by federated.strategy, DP-wrapped when dp_noise > 0."""
    if s.strategy not in STRATEGIES:
        raise StrategyConfigError(f"federated.strategy = {s.strategy!r} is unknown; choose from "
                                  f"{', '.join(STRATEGIES)}")
    strategy = STRATEGIES[s.strategy](s)
    if s.dp_noise > 0:
        if s.dp_clip <= 0 or not math.isfinite(s.dp_clip):
            raise StrategyConfigError("federated.dp_noise > 0 needs a clipping norm: set "
                                      "federated.dp_clip > 0 (e.g. 1.0)")
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=s.dp_noise, clipping_norm=s.dp_clip,
            num_sampled_clients=sampled_edges(s))
    return strategy

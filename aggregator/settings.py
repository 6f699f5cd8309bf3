"""The server's settings as plain typed values, and their Flower run_config form.

The orchestrator builds `ServerSettings` from the experiment config; the simulation engine
hands the object to the ServerApp directly, the deployment engine passes it as Flower
`run_config` (flat keys, kebab-case, declared in pyproject's [tool.flwr.app.config]).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aggregator.errors import StrategyConfigError
from edge_nodes.learning.catalog_links import load_successor_map
from edge_nodes.learning.model import ModelSpec


@dataclass(frozen=True)
class ServerSettings:
    """Everything the ServerApp needs: strategy, rounds, model shape, edge hyperparameters.

    Built from the config by simulation/training/plan.py (same-named fields); the defaults
    equal the config's base values (pinned by tests/test_one_home.py) and serve direct users."""

    model_dir: str
    n_items: int
    history_len: int
    num_edges: int
    dim: int = 64
    kind: str = "pooled"  # the model kind (edge_nodes/learning/kinds/)
    strategy: str = "fedavg"
    rounds: int = 10
    fraction_train: float = 1.0
    min_nodes: int = 2
    proximal_mu: float = 0.01
    server_lr: float = 0.1
    server_momentum: float = 0.9
    trimmed_beta: float = 0.2
    byzantine_nodes: int = 0
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    local_epochs: int = 1
    min_local_steps: int = 16
    lr: float = 0.01
    batch_size: int = 512
    l2: float = 1e-6
    negatives: int = 512
    recency_half_life_days: float = 0.0
    side_info: bool = False
    cooc_window: int = 5        # how the edges counted co-occurrences (stored in models/itemcf.npz)
    cooc_decay: float = 0.6
    cooc_half_life_days: float = 0.0  # > 0: the edges aged their counts to the cut ...
    cooc_ref_s: int = 0               # ... this one, in Unix seconds (stored with the table)
    catalog_path: str = ""
    eval_fraction: float = 0.1
    top_k: int = 10
    personalize_epochs: int = 0
    local_layers: str = "out_bias"  # comma-separated model arrays the edges keep (FedPer); "" = none
    seed: int = 42
    resume: bool = False
    round_timeout_s: float = 600.0
    connect_timeout_s: float = 120.0

    def train_config(self) -> dict[str, Any]:
        """The hyperparameters every edge receives with the global model."""
        return {"model-kind": self.kind, "history-len": self.history_len, "local-epochs": self.local_epochs,
                "min-local-steps": self.min_local_steps, "lr": self.lr, "batch-size": self.batch_size,
                "l2": self.l2, "negatives": self.negatives, "eval-fraction": self.eval_fraction,
                "recency-half-life-days": self.recency_half_life_days, "side-info": self.side_info,
                "top-k": self.top_k, "seed": self.seed, "local-layers": self.local_layers}

    def model_spec(self) -> ModelSpec:
        """The model's spec, with the successor map of the public catalog when catalog_path is set."""
        return ModelSpec(self.n_items, self.dim, self.history_len, kind=self.kind,
                         successor=load_successor_map(self.catalog_path))

    def edge_config(self, spec: ModelSpec) -> dict[str, Any]:
        """train_config() plus the spec's successor map: what every edge receives with the model."""
        return {**self.train_config(), "successor": list(spec.successor)}

    def to_run_config(self) -> dict[str, Any]:
        """Flat kebab-case keys for Flower's run_config."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> ServerSettings:
        """Read settings back from a Flower run_config, checking every key is present."""
        values = {}
        for f in dataclasses.fields(cls):
            key = f.name.replace("_", "-")
            if key not in run_config:
                raise StrategyConfigError(f"run_config lacks {key!r}; declare it in pyproject.toml "
                                          "[tool.flwr.app.config] and pass it with --run-config")
            kind = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
            values[f.name] = kind(run_config[key])
        return cls(**values)

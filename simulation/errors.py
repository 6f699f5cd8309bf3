"""Domain errors of the orchestrator: each carries a reason a user can act on."""

from aggregator.errors import AggregatorError
from edge_nodes.errors import EdgeError
from monitoring.errors import MonitoringError
from spark_features.errors import FeaturesError


class EdgecacheError(Exception):
    """Base of every error edgecache raises on purpose (the CLI prints it in one line)."""


class ConfigError(EdgecacheError):
    """A config file, key or value is wrong; the message names the key and what is allowed."""


class RunDirError(EdgecacheError):
    """A run directory lacks what a stage needs (e.g. `train` before `features`)."""


class TrainingFailed(EdgecacheError):
    """Federated training stopped (too few edges, a strategy error, a dead engine)."""


class DeploymentError(EdgecacheError):
    """A Flower daemon would not start, or `flwr run` did not finish."""


# What the CLI reports as a one-line error (every package's errors raised on purpose).
DOMAIN_ERRORS: tuple[type[Exception], ...] = (EdgecacheError, EdgeError, AggregatorError, MonitoringError,
                                                 FeaturesError)

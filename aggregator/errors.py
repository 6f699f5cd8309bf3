"""Domain errors of the aggregator: each says what went wrong and what to do about it."""


class AggregatorError(Exception):
    """Base of the errors the Flower server side raises on purpose."""


class StrategyConfigError(AggregatorError):
    """A strategy name or strategy setting cannot be used; the message names the config key."""


class TooFewEdges(AggregatorError):
    """Fewer edges replied in a round than federated.min_nodes allows: training stops."""


class CheckpointError(AggregatorError):
    """A checkpoint to resume from is missing, unreadable or does not fit the model."""

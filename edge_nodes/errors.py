"""Domain errors of an edge: each says what went wrong and what to do about it."""


class EdgeError(Exception):
    """Base of the errors an edge raises on purpose."""


class RedisUnavailable(EdgeError):
    """No Redis server can be started or reached for the edges."""


class CacheConfigError(EdgeError):
    """Cache settings an edge cannot run with (unit, capacity, prefetch shares)."""


class PredictorError(EdgeError):
    """A predictor cannot be built: its feature table or model file is missing or malformed."""


class ModelFileError(EdgeError):
    """A model file is missing, unreadable or does not match the expected model shape."""


class EdgeDataError(EdgeError):
    """An edge's training examples are missing or malformed."""


class InjectedFailure(EdgeError):
    """A failure injected on purpose by federated.fail_edges / fail_rounds (testing)."""


class CacheLibraryError(EdgeError):
    """The packaged Lua library is malformed: a mode's script does not register exactly one function."""

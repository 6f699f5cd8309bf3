"""Domain errors of the feature job: each says what is wrong and how to fix it."""


class FeaturesError(Exception):
    """Base of every error the feature job raises on purpose."""


class JavaNotFoundError(FeaturesError):
    """No usable Java 17/21 runtime for Spark; the message names the fix."""


class FeaturesInputError(FeaturesError):
    """The run directory lacks logs or a catalog, or an argument is malformed."""

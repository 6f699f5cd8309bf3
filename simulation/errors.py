"""Domain errors of the orchestrator: each carries a reason a user can act on."""


class EdgecacheError(Exception):
    """Base of every error edgecache raises on purpose (the CLI prints it in one line)."""


class ConfigError(EdgecacheError):
    """A config file, key or value is wrong; the message names the key and what is allowed."""


class NotImplementedYet(EdgecacheError):
    """A pipeline stage whose capability has not landed yet."""


class RunDirError(EdgecacheError):
    """A run directory lacks what a stage needs (e.g. `train` before `features`)."""

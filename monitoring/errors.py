"""Domain errors of the monitoring package: each says what went wrong and what to do about it."""


class MonitoringError(Exception):
    """Base of the errors monitoring raises on purpose."""


class ExporterPortError(MonitoringError):
    """The metrics exporter cannot listen on the requested address and port."""

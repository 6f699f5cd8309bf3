"""Per-edge Redis connections: database i for edge i, or a key prefix on one-database servers.

Connections come from redis-py pools with retry and exponential backoff, so a short outage
is ridden out by the client; a long one surfaces as `redis.ConnectionError` to the caller,
which counts it (see the live flow) instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from edge_nodes.errors import RedisUnavailable

RETRIABLE = (redis.ConnectionError, redis.TimeoutError)


def redact_url(url: str) -> str:
    """`url` with its password replaced by ***, for logs, errors and results.json."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def make_client(url: str, db: int | None = None, *, retries: int = 3,
                socket_timeout_s: float = 2.0) -> redis.Redis:
    """A client for `url` (redis://, rediss://, user:password@...) with retry and backoff."""
    kwargs: dict[str, object] = {
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
        "retry_on_error": list(RETRIABLE),
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "health_check_interval": 30,
    }
    if db is not None:
        kwargs["db"] = db
    try:
        return redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
    except ValueError as e:
        raise RedisUnavailable(f"redis.url {redact_url(url)!r} is not a Redis URL ({e}); "
                               "use redis://[user:password@]host:port or rediss://...") from e


@dataclass(frozen=True)
class EdgeNamespace:
    """Where one edge's keys live: a client bound to its database, plus a key prefix."""

    edge_id: str
    client: redis.Redis
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def edge_namespace(url: str, edge_id: str, edge_index: int, isolation: str = "db") -> EdgeNamespace:
    """Edge i uses database i (isolation='db') or prefix 'edge:<id>:' in database 0 ('prefix')."""
    if isolation == "db":
        client = make_client(url, db=edge_index)
        try:
            client.ping()
        except redis.ResponseError as e:
            raise RedisUnavailable(
                f"edge {edge_id} cannot use database {edge_index} on {redact_url(url)} ({e}); the server "
                "has too few databases (or is a cluster): set redis.isolation = \"prefix\"") from e
        except redis.AuthenticationError as e:
            raise RedisUnavailable(f"Redis at {redact_url(url)} refused the credentials ({e}); put the "
                                   "password in redis.url: redis://[user]:password@host:port") from e
        except RETRIABLE as e:
            raise RedisUnavailable(f"Redis at {redact_url(url)} does not answer ({e}); start it or leave "
                                   "redis.url empty for the embedded server") from e
        return EdgeNamespace(edge_id, client, "")
    if isolation == "prefix":
        return EdgeNamespace(edge_id, make_client(url, db=0), f"edge:{edge_id}:")
    raise ValueError(f"isolation must be 'db' or 'prefix', got {isolation!r}")

"""The embedded Redis lifecycle and per-edge connections, against a real server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import psutil
import pytest
import redis

from edge_nodes.cache.redis_conn import edge_namespace, make_client, redact_url
from edge_nodes.cache.redis_server import EmbeddedRedis, find_server_binary, redis_server
from edge_nodes.errors import RedisUnavailable


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_binary_is_found() -> None:
    assert find_server_binary().exists()


def test_edges_get_their_own_database(redis_url: str) -> None:
    a = edge_namespace(redis_url, "edge-00", 0)
    b = edge_namespace(redis_url, "edge-01", 1)
    a.client.flushdb()
    b.client.flushdb()
    a.client.set(a.key("user:U001"), "C456")
    assert a.client.get(a.key("user:U001")) == b"C456"
    assert b.client.get(b.key("user:U001")) is None
    assert make_client(redis_url, db=1).dbsize() == 0
    assert make_client(redis_url, db=0).dbsize() == 1


def test_prefix_isolation_for_single_database_servers(redis_url: str) -> None:
    a = edge_namespace(redis_url, "edge-00", 0, isolation="prefix")
    b = edge_namespace(redis_url, "edge-01", 1, isolation="prefix")
    a.client.set(a.key("x"), "1")
    assert b.client.get(b.key("x")) is None
    assert a.key("x") == "edge:edge-00:x"
    a.client.delete(a.key("x"))


def test_server_is_gone_after_the_block_and_after_an_exception() -> None:
    with EmbeddedRedis() as server:
        pid = server.pid
        assert pid is not None and _alive(pid)
    assert not _alive(pid)
    with pytest.raises(RuntimeError), EmbeddedRedis() as server:
        pid = server.pid
        raise RuntimeError("boom")
    assert pid is not None and not _alive(pid)


def test_server_dies_with_a_killed_parent() -> None:
    """Even a SIGKILLed parent leaves no orphan: the server has PR_SET_PDEATHSIG."""
    code = textwrap.dedent("""
        import sys, time
        from edge_nodes.cache.redis_server import EmbeddedRedis
        s = EmbeddedRedis().start()
        print(s.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.kill()
    parent.wait()
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(child_pid).wait(timeout=10)
    assert not _alive(child_pid)


def test_external_url_with_password() -> None:
    with EmbeddedRedis(password="s3cret") as server, redis_server(server.url, 4) as url:
        assert url == server.url
        ns = edge_namespace(url, "edge-02", 2)
        ns.client.set("k", "v")
        assert ns.client.get("k") == b"v"
        no_auth = f"redis://127.0.0.1:{server.port}"
        with pytest.raises(redis.AuthenticationError):
            make_client(no_auth, db=0).ping()


def test_embedded_server_refuses_a_client_without_the_run_password() -> None:
    """Closed by default: each start gets its own random password, carried only by the URL."""
    with redis_server("", databases=4) as url, EmbeddedRedis() as other:
        password = urlsplit(url).password
        assert password and len(password) >= 24 and password != other.password
        port = urlsplit(url).port
        for anonymous in (f"redis://127.0.0.1:{port}", f"redis://:wrong@127.0.0.1:{port}"):
            with pytest.raises(redis.AuthenticationError):
                make_client(anonymous, db=0, retries=0).ping()
        with pytest.raises(RedisUnavailable, match="refused the credentials") as err:
            edge_namespace(f"redis://:wrong@127.0.0.1:{port}", "edge-00", 0)
        assert "wrong" not in str(err.value) and "***" in str(err.value)
        assert make_client(url, db=3).ping()
        # Not on any command line: every local user can read /proc/<pid>/cmdline.
        assert all(password not in " ".join(_cmd(p)) for p in psutil.process_iter())


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://alice:p%40ss@h:1") == "rediss://alice:***@h:1"
    assert redact_url("redis://localhost:6379") == "redis://localhost:6379"
    assert redact_url("") == ""


def test_embedded_mode_yields_a_live_server() -> None:
    with redis_server("", databases=20) as url:
        client = make_client(url, db=19)
        assert client.ping()
        client.close()


def test_dead_server_is_a_clear_error() -> None:
    with EmbeddedRedis() as server:
        url = server.url
    with pytest.raises(RedisUnavailable, match="does not answer"):
        edge_namespace(url, "edge-00", 0)


def test_too_few_databases_suggests_prefix_mode() -> None:
    with EmbeddedRedis(databases=16) as server, pytest.raises(RedisUnavailable, match="prefix"):
        edge_namespace(server.url, "edge-20", 20)


def test_bad_url_is_named() -> None:
    with pytest.raises(RedisUnavailable, match="not a Redis URL"):
        make_client("http://localhost:6379")

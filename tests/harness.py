"""Real-process test harness: Celery worker processes and waiting with deadlines.

A worker started here is a separate ``celery worker`` OS process (prefork pool), on the
same Redis as the test and on the test database, so a test sees exactly what production
does: messages through the broker, results written by another process. Tests that use
it must use ``@pytest.mark.django_db(transaction=True)`` so their rows are committed and
visible to the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import kombu.exceptions
import redis
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from config.env import database_url_for

T = TypeVar("T")

BASE_DIR = Path(settings.BASE_DIR)
LOG_DIR = Path(settings.VAR_DIR) / "test-logs"
# A worker imports Django and connects to Redis and the database before it answers a
# ping; 60 s covers a cold start on a loaded 2-core CI machine.
WORKER_START_TIMEOUT = 60.0
# Warm shutdown lets running tasks finish; past this the process group is killed.
WORKER_STOP_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1


class ConditionTimeout(AssertionError):
    pass


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Return the first truthy value of ``condition()``, polling until ``timeout``.

    Raises ConditionTimeout naming ``message`` (a string, or a callable that describes
    the state at the deadline, e.g. a worker's log tail) when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise ConditionTimeout(f"not true within {timeout:.1f}s: {detail}")
        time.sleep(interval)


def delete_keys(*patterns: str) -> None:
    """Delete the Redis keys matching ``patterns`` (a test's fresh start)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        for pattern in patterns:
            for key in client.scan_iter(pattern):
                client.delete(key)
    finally:
        client.close()


def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker process needs to share this test's Redis and database."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for(connection.settings_dict)
    env["REDIS_URL"] = settings.REDIS_URL
    env["DEBUG"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass(eq=False)
class ManagedProcess:
    """A process group started by a test (a worker with its pool, or the relay)."""

    name: str
    process: subprocess.Popen
    log_path: Path
    _log_file: object = field(repr=False, default=None)

    def __post_init__(self) -> None:
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, last: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-last:])

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a host lost, nothing cleaned up.
        Returns once no process of the group is left (pool children die a moment after
        the main process)."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        wait_until(self._group_gone, timeout=10, message=f"process group {self.pid} to die")
        self._close_log()

    def _group_gone(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def stop(self) -> None:
        """SIGTERM by PID (a worker's warm shutdown); kill the group if it lingers."""
        if self.is_alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Pool children outlive a killed main process unless their group is killed too.
        self._signal_group(signal.SIGKILL)
        self._close_log()

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _close_log(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class WorkerProcess(ManagedProcess):
    """A running ``celery worker`` process group (main process plus pool children)."""

    def answers_ping(self) -> bool:
        # A connection of its own: the app's pooled ones may have died with a Redis
        # that a test restarted.
        try:
            with celery_app.connection_for_write() as connection:
                replies = celery_app.control.ping(
                    destination=[self.name], timeout=0.5, connection=connection
                )
        except (OSError, redis.RedisError, kombu.exceptions.OperationalError):
            return False
        return any(self.name in reply for reply in replies)


# Queues only the workers a test starts for itself consume.
PRIVATE_QUEUES = ("isolated", "limited")


def session_queues() -> list[str]:
    """Every declared queue but the private ones."""
    return [name for name in settings.TASKYARD_QUEUES if name not in PRIVATE_QUEUES]


# Every process a test started and has not stopped; stopped at the end of the session
# (tests/conftest.py) so a failing test cannot leave a worker consuming the next run's jobs.
RUNNING: list[ManagedProcess] = []


def _own_session_and_die_with_parent() -> None:  # runs in the child before exec
    os.setsid()  # its own process group, so stop() reaches a worker's pool too
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # pytest killed: the worker stops too


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None):
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w")
    process = subprocess.Popen(
        argv,
        cwd=BASE_DIR,
        env=worker_environment(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=_own_session_and_die_with_parent,  # noqa: PLW1509
    )
    return process, log_file


def stop_all() -> None:
    for process in list(RUNNING):
        process.stop()


def start_relay(
    env: dict[str, str] | None = None,
    *,
    ready: Callable[[], object] | None = None,
    log_dir: Path = LOG_DIR,
) -> ManagedProcess:
    """Start ``manage.py relay`` on the test database; return once its loop runs (its
    start is logged), or once ``ready()`` is true when given."""
    name = f"relay-{uuid.uuid4().hex[:8]}"
    log_path = log_dir / f"{name}.log"
    process, log_file = _spawn([sys.executable, "manage.py", "relay"], log_path, env)
    relay = ManagedProcess(name, process, log_path, log_file)

    def started() -> object:
        if not relay.is_alive():
            raise AssertionError(f"relay exited at start:\n{relay.log()}")
        if ready is not None:
            return ready()
        return "relay relay-" in relay.log_path.read_text(errors="replace")

    try:
        wait_until(started, timeout=WORKER_START_TIMEOUT, interval=0.1, message=relay.log)
    except BaseException:
        relay.stop()
        raise
    return relay


def start_beat() -> ManagedProcess:
    """Start ``celery beat`` (the project's scheduler) on the test database."""
    name = f"beat-{uuid.uuid4().hex[:8]}"
    log_path = LOG_DIR / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "beat",
        "--loglevel=INFO",
        f"--pidfile={LOG_DIR / name}.pid",
    ]
    process, log_file = _spawn(argv, log_path, None)
    beat = ManagedProcess(name, process, log_path, log_file)
    wait_until(
        lambda: "beat: Starting" in log_path.read_text(errors="replace") or not beat.is_alive(),
        timeout=WORKER_START_TIMEOUT,
        message=beat.log,
    )
    assert beat.is_alive(), beat.log()
    return beat


def start_worker(
    *,
    concurrency: int = 2,
    queues: list[str] | None = None,
    env: dict[str, str] | None = None,
    name: str | None = None,
    loglevel: str = "INFO",
    extra_args: Sequence[str] = (),
    log_dir: Path = LOG_DIR,
) -> WorkerProcess:
    """Start a ``celery worker`` process (prefork pool) and return once it answers a
    control ping. ``extra_args`` go on its command line (e.g. ``--include=...``)."""
    name = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
    log_path = log_dir / f"{name.split('@')[0]}.log"
    argv = [
        sys.executable,
        *("-m", "celery", "-A", "config", "worker"),
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--hostname={name}",
        *("--without-mingle", "--without-gossip"),
        f"--queues={','.join(queues or session_queues())}",
        *extra_args,
    ]
    process, log_file = _spawn(argv, log_path, env)
    worker = WorkerProcess(name, process, log_path, log_file)

    def ready() -> bool:
        if not worker.is_alive():
            raise AssertionError(f"worker {name} exited at start:\n{worker.log()}")
        return worker.answers_ping()

    try:
        wait_until(
            ready,
            timeout=WORKER_START_TIMEOUT,
            interval=0.2,
            message=lambda: f"worker {name} ready; its log:\n{worker.log()}",
        )
    except BaseException:
        worker.stop()
        raise
    return worker

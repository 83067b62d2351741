"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
from contextlib import contextmanager

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings

from config.celery import app as celery_app
from queueing.relay.loop import LOCK_KEY
from tests.broker import broker as session_broker
from tests.harness import (
    ConditionTimeout,
    ManagedProcess,
    WorkerProcess,
    delete_keys,
    session_queues,
    start_relay,
    start_worker,
    stop_all,
    wait_until,
)


def pytest_sessionfinish(session, exitstatus) -> None:
    stop_all()  # whatever a failed test left running


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, relay) -> WorkerProcess:
    """One real `celery worker` process for the session, on the test database, consuming
    every queue but ``isolated``, with the relay running beside it as in production.
    Messages left by an interrupted run are purged first. Tests using it need
    ``@pytest.mark.django_db(transaction=True)``.
    """
    global _session_worker  # noqa: PLW0603
    celery_app.control.purge()
    worker = start_worker()
    _session_worker = worker
    yield worker
    _session_worker = None
    worker.stop()


_session_worker: WorkerProcess | None = None


@pytest.fixture(autouse=True)
def settle_session_worker(request):
    """After a database test, let the session worker finish what the test left on its
    queues: on PostgreSQL the test database's flush (TRUNCATE) can deadlock with a job
    still writing its outcome."""
    yield
    if _session_worker is None or request.node.get_closest_marker("django_db") is None:
        return
    from django.db.models import Q

    from queueing.models import Job, JobStatus

    queues = session_queues()
    busy = Q(status=JobStatus.RUNNING) | Q(status=JobStatus.QUEUED, published_at__isnull=False)

    def settled() -> bool:
        return not Job.objects.filter(busy, queue__in=queues).exists()

    # A test that left a queue paused, say, times out here: the flush may then race.
    with contextlib.suppress(ConditionTimeout):
        wait_until(settled, timeout=20, interval=0.1)


class RelayService:
    """The session's `manage.py relay` process, which a test can pause."""

    def __init__(self) -> None:
        self.process: ManagedProcess = start_relay()
        self._pauses = 0

    @contextmanager
    def paused(self):
        """Stop the relay (and free its SQLite leadership lock) for a test that drives
        relay ticks itself; start a new one after the outermost pause ends (a test may
        pause inside a module that is paused as a whole)."""
        if self._pauses == 0:
            self.process.stop()
            redis.Redis.from_url(settings.REDIS_URL).delete(LOCK_KEY)
        self._pauses += 1
        try:
            yield
        finally:
            self._pauses -= 1
            if self._pauses == 0:
                self.process = start_relay()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def relay(django_db_setup) -> RelayService:
    """The relay/reaper loop (`manage.py relay`) for the session, on the test database."""
    service = RelayService()
    yield service
    service.stop()


@pytest.fixture
def broker():
    """Control over the session's Redis: stop it, restart it empty."""
    session_broker.require_control()
    yield session_broker
    if not session_broker.is_up():
        session_broker.restart_empty()


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    for key in client.scan_iter("taskyard-test:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def published() -> list[str]:
    """Ids of the messages this process publishes during the test (Celery's own signal)."""
    ids: list[str] = []

    def record(sender=None, headers=None, **_):
        ids.append(headers["id"])

    before_task_publish.connect(record, weak=False)
    yield ids
    before_task_publish.disconnect(record)


@pytest.fixture(autouse=True)
def _close_publish_breaker():
    """A test that stopped Redis leaves this process's publish breaker open for a few
    seconds (queueing.ledger.enqueue); the next test starts with a broker that is up."""
    from queueing.ledger import enqueue as ledger

    ledger._publisher.open_until = 0.0


@pytest.fixture
def fresh_rollups():
    """The alert checks read the workers' per-minute roll-ups, which live in Redis and
    outlast a test's database: none left by an earlier test (a worker test's failures
    would open alerts in a test that checks which alerts open)."""
    delete_keys("taskyard:minute:*")

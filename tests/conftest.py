"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings

from config.celery import app as celery_app
from tests.broker import broker as session_broker
from tests.harness import ManagedProcess, WorkerProcess, start_relay, start_worker, stop_all


def pytest_sessionfinish(session, exitstatus) -> None:
    stop_all()  # whatever a failed test left running


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, relay) -> WorkerProcess:
    """One real `celery worker` process for the session, on the test database, consuming
    every queue but ``isolated``, with the relay running beside it as in production.
    Messages left by an interrupted run are purged first. Tests using it need
    ``@pytest.mark.django_db(transaction=True)``.
    """
    celery_app.control.purge()
    worker = start_worker()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def relay(django_db_setup) -> ManagedProcess:
    """The relay/reaper loop (`manage.py relay`) for the session, on the test database."""
    process = start_relay()
    yield process
    process.stop()


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
    seconds (queueing.ledger); the next test starts with a broker that is up."""
    from queueing import ledger

    ledger._publisher.open_until = 0.0

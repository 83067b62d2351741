"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from config.celery import app as celery_app
from tests.harness import WorkerProcess, start_worker


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker) -> WorkerProcess:
    """One real `celery worker` process for the session, on the test database.

    Messages left on the test Redis by an earlier, interrupted run are purged first.
    Tests using it need ``@pytest.mark.django_db(transaction=True)``.
    """
    celery_app.control.purge()
    worker = start_worker()
    yield worker
    worker.stop()


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    for key in client.scan_iter("taskyard-test:*"):
        client.delete(key)
    client.close()

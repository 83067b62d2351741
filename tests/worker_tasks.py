"""Tasks that exist only for tests; real worker processes load them with --include.

Side effects go to the test-only ``SideEffect`` table (in the job's own transaction for
``record``) or to Redis, so a test counts how many times a body really ran.
"""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task
from django.conf import settings
from rest_framework import serializers

from queueing.api.contracts import Contract
from queueing.control.operations import JobCancelled
from queueing.ledger.retry import PermanentError, RateLimited
from tests.sideeffects.models import SideEffect

KEY_PREFIX = "taskyard-test"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


@shared_task(name="tests.slow_run")
def slow_run(key: str, seconds: float) -> dict:
    """Note the pool process's pid and the start, work ``seconds``, then note the finish."""
    client = redis_client()
    client.rpush(f"{KEY_PREFIX}:{key}:started", os.getpid())
    time.sleep(seconds)  # the "work": long enough for a test to kill this process
    client.incr(f"{KEY_PREFIX}:{key}:finished")
    return {"pid": os.getpid()}


class RecordArgs(Contract):
    """The API contract of tests.record: a required key, an optional bounded duration."""

    key = serializers.CharField(max_length=100)
    seconds = serializers.FloatField(min_value=0, max_value=60, required=False)


# time_limit above any test worker's TASK_TIME_LIMIT, so a test can run it past the
# broker's visibility timeout.
@shared_task(
    bind=True,
    name="tests.record",
    atomic=True,
    time_limit=120,
    soft_time_limit=110,
    api_contract=RecordArgs,
)
def record(self, key: str, seconds: float = 0.0) -> str:
    """Work ``seconds``, then write one SideEffect row in the job's own transaction: the
    row commits only together with the job's success, under a valid lease."""
    if seconds:
        time.sleep(seconds)
    SideEffect.objects.create(job_id=self.job_id, key=key, attempt=self.attempt)
    return key


class HttpError(Exception):
    """Shaped like requests.HTTPError: the status is on ``response``."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": {}})()


FAILURES = {
    "permanent": lambda: PermanentError("customer 42 has no billing address"),
    "transient": lambda: ConnectionError("connection refused by 10.0.0.7"),
    "rate_limited": lambda: RateLimited(retry_after=0.3),
    "auth": lambda: HttpError(401),
    "server_error": lambda: HttpError(503),
    "bad_request": lambda: HttpError(422),
}


@shared_task(bind=True, name="tests.fail", max_attempts=3, retry_base_delay=0.1)
def fail(self, kind: str, key: str, succeed_on_attempt: int = 0) -> str:
    """Count the attempt in Redis, then fail with ``kind`` (or succeed on the given
    attempt number)."""
    redis_client().rpush(f"{KEY_PREFIX}:{key}:attempts", self.attempt)
    if self.attempt == succeed_on_attempt:
        return "ok"
    raise FAILURES[kind]()


@shared_task(bind=True, name="tests.cooperative")
def cooperative(self, key: str, steps: int = 300) -> str:
    """Work in 0.1 s steps, reporting progress, until done or asked to stop."""
    client = redis_client()
    for step in range(steps):
        if self.is_cancelled():
            client.set(f"{KEY_PREFIX}:{key}:stopped_at", step)
            raise JobCancelled()
        self.progress(100 * step / steps, f"step {step} of {steps}")
        client.set(f"{KEY_PREFIX}:{key}:step", step)
        time.sleep(0.1)
    self.progress(100, "done")
    return "done"


@shared_task(bind=True, name="tests.exclusive", concurrency_key="customer:{customer}")
def exclusive(self, customer: int, seconds: float) -> None:
    """Note start and end times; at most one per customer may run at a time."""
    client = redis_client()
    client.rpush(f"{KEY_PREFIX}:exclusive:{customer}", f"start {time.time()}")
    time.sleep(seconds)  # the "work"
    client.rpush(f"{KEY_PREFIX}:exclusive:{customer}", f"end {time.time()}")

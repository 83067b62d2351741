"""Tasks that exist only for tests; real worker processes load them with --include.

Their side effects go to Redis (a counter per run), so a test can count how many times a
body really ran, in which process, independently of Celery's own bookkeeping.
"""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task
from django.conf import settings

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

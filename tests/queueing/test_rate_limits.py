"""Global rate limits: parsed strictly, exact across workers, no attempt spent waiting."""

from __future__ import annotations

import bisect

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

import queueing
from queueing.control.limits import RateLimiter
from queueing.models import Job, JobStatus
from queueing.specs import Rate, parse_queues, parse_rate
from tests.harness import start_worker, wait_until


@pytest.mark.parametrize(
    "value", ["fast", "0/m", "10/d", "10", "", None, 10, "-1/s", "5/0m", "5/-2m"]
)
def test_bad_rates_are_refused_with_the_setting_named(value):
    with pytest.raises(ImproperlyConfigured, match="where: rate"):
        parse_rate(value, "where")


def test_a_queue_declaration_with_a_bad_rate_fails_at_start():
    with pytest.raises(ImproperlyConfigured, match=r"TASKYARD_QUEUES\['billing'\].rate_limit"):
        parse_queues({"billing": {"concurrency": 1, "rate_limit": "fast"}})


def test_good_rates():
    assert parse_rate("100/m", "x") == Rate(100, 60.0)
    assert parse_rate(" 1 / s ", "x") == Rate(1, 1.0)
    assert str(parse_rate("5/h", "x")) == "5/h"
    assert parse_rate("100/15m", "x") == Rate(100, 900.0)
    assert str(parse_rate("100/15m", "x")) == "100/15m"


def test_the_limiter_allows_a_burst_of_n_then_says_how_long_to_wait():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("taskyard:rate:unit")
    limiter = RateLimiter(client)
    waits = [limiter.acquire("unit", Rate(5, 1.0)) for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert 0 < waits[5] <= 1.0


def max_starts_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_no_window_sees_more_starts_than_the_limit_across_two_workers(relay):
    """The 'limited' queue allows 10 starts per second, whatever the number of workers."""
    redis.Redis.from_url(settings.REDIS_URL).delete("taskyard:rate:queue:limited")
    workers = [start_worker(queues=["limited"], concurrency=1) for _ in range(2)]
    try:
        with transaction.atomic():
            ids = [
                queueing.enqueue("tests.record", [f"rl-{n}"], queue="limited").id for n in range(40)
            ]
        wait_until(
            lambda: Job.objects.filter(id__in=ids, status=JobStatus.SUCCEEDED).count() == 40,
            timeout=60,
            interval=0.25,
            message=workers[0].log,
        )
    finally:
        for worker in workers:
            worker.stop()

    jobs = Job.objects.filter(id__in=ids)
    starts = [job.started_at.timestamp() for job in jobs]
    # 0.9 s, not 1 s: a start is timed at the claim, a few ms after the limiter's record.
    assert max_starts_in_window(starts, 0.9) <= 10
    assert max(starts) - min(starts) >= 3.0  # 40 jobs at 10/s cannot finish sooner
    assert {job.attempts for job in jobs} == {1}  # waiting spent no attempt
    workers_used = {job.attempt_rows.get().worker.split("/")[0] for job in jobs}
    assert len(workers_used) == 2

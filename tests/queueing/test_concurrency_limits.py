"""Global concurrency limits per key: one billing run per customer at a time, across
workers, and a dead worker's slot lapses with its lease."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import transaction

import queueing
from queueing.control.limits import ConcurrencyLimiter
from queueing.models import Job, JobStatus
from tests.harness import start_worker, wait_until
from tests.worker_tasks import KEY_PREFIX


def test_a_dead_holders_slot_lapses_with_its_lease():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("taskyard:concurrency:unit")
    limiter = ConcurrencyLimiter(client)
    assert limiter.acquire("unit", 1, "job-a", lease_seconds=0.3) == 0
    assert limiter.acquire("unit", 1, "job-a", lease_seconds=0.3) == 0  # its own slot
    assert 0 < limiter.acquire("unit", 1, "job-b", lease_seconds=0.3) <= 0.3
    # job-a's worker dies: no release, no renewal.
    wait_until(lambda: limiter.acquire("unit", 1, "job-b", 0.3) == 0, timeout=5)
    assert limiter.holders("unit") == ["job-b"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_one_run_per_key_at_a_time_across_two_workers(relay, redis_client):
    workers = [start_worker(queues=["isolated"], concurrency=2) for _ in range(2)]
    try:
        with transaction.atomic():
            same = [
                queueing.enqueue("tests.exclusive", [42, 0.3], queue="isolated").id
                for _ in range(6)
            ]
            other = queueing.enqueue("tests.exclusive", [7, 0.3], queue="isolated").id
        wait_until(
            lambda: (
                Job.objects.filter(id__in=[*same, other], status=JobStatus.SUCCEEDED).count() == 7
            ),
            timeout=60,
            interval=0.2,
            message=workers[0].log,
        )
    finally:
        for worker in workers:
            worker.stop()

    events = [e.split() for e in redis_client.lrange(f"{KEY_PREFIX}:exclusive:42", 0, -1)]
    kinds = [kind for kind, _ in events]
    assert kinds == ["start", "end"] * 6, "two runs for customer 42 overlapped"
    times = [float(at) for _, at in events]
    assert times == sorted(times)
    assert set(Job.objects.filter(id__in=same).values_list("attempts", flat=True)) == {1}
    # The other customer was not held up behind customer 42.
    other_start = float(redis_client.lindex(f"{KEY_PREFIX}:exclusive:7", 0).split()[1])
    assert other_start < times[-1]

"""Scale-out: two worker "hosts" (separate hostnames and processes, one database, one
Redis) drain one queue together, and no job runs twice (docs/performance.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from queueing.models import JobAttempt
from tests.harness import start_worker
from tests.queueing.test_recovery import (
    assert_each_ran_exactly_once,
    enqueue_many,
    wait_all_succeeded,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_two_worker_hosts_share_a_queue_with_no_duplicate(relay):
    hosts = [
        start_worker(queues=["isolated"], concurrency=2, name=f"scale-{n}@host-{n}")
        for n in ("a", "b")
    ]
    try:
        ids = enqueue_many(400, "scale", queue="isolated", seconds=0.01)
        wait_all_succeeded(ids, timeout=180, describe=hosts[0].log)
    finally:
        for host in hosts:
            host.stop()
    assert_each_ran_exactly_once(ids)
    attempts = JobAttempt.objects.filter(job_id__in=ids)
    assert attempts.count() == len(ids)  # one attempt each: no job claimed twice
    per_host = Counter(worker.split("/")[0] for worker in attempts.values_list("worker", flat=True))
    assert set(per_host) == {"scale-a@host-a", "scale-b@host-b"}, per_host
    assert min(per_host.values()) >= len(ids) // 10, per_host  # both really worked

"""Priorities 0-9 inside one queue: 0 is the most urgent, and an urgent job enqueued
behind a backlog starts before the backlog's remaining jobs."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

import queueing
from queueing.ledger.enqueue import broker_queue_keys
from queueing.models import Job, JobStatus
from tests.harness import start_worker, wait_until


def test_each_priority_has_its_own_broker_list_most_urgent_first():
    assert broker_queue_keys("billing") == ["billing"] + [
        f"billing\x06\x16{step}" for step in range(1, 10)
    ]
    assert broker_queue_keys("billing", up_to_priority=1) == ["billing", "billing\x06\x161"]


@pytest.mark.django_db(transaction=True)
def test_a_job_without_priority_gets_the_default_in_the_middle(settings):
    job = queueing.enqueue("queueing.ping", ["x"], queue="isolated")
    assert job.priority == settings.TASKYARD_DEFAULT_PRIORITY == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_urgent_jobs_enqueued_later_start_before_the_waiting_backlog(relay):
    worker = start_worker(queues=["isolated"], concurrency=1)
    try:
        # Not an atomic task: on SQLite its open write transaction would hold up the
        # enqueues below until it finished.
        blocker = queueing.enqueue("tests.slow_run", ["blocker", 4.0], queue="isolated")
        wait_until(
            lambda: Job.objects.get(id=blocker.id).status == JobStatus.RUNNING,
            timeout=30,
            message=worker.log,
        )
        with transaction.atomic():
            low = [
                queueing.enqueue("tests.record", [f"low-{n}"], queue="isolated", priority=9).id
                for n in range(200)
            ]
        high_enqueued_at = timezone.now()
        with transaction.atomic():
            high = [
                queueing.enqueue("tests.record", [f"high-{n}"], queue="isolated", priority=0).id
                for n in range(10)
            ]
        wait_until(
            lambda: (
                Job.objects.filter(id__in=low + high, status=JobStatus.SUCCEEDED).count() == 210
            ),
            timeout=180,
            interval=0.5,
            message=worker.log,
        )
    finally:
        worker.stop()

    started = dict(Job.objects.filter(id__in=low + high).values_list("id", "started_at"))
    remaining_low = [started[i] for i in low if started[i] > high_enqueued_at]
    # The worker was busy, so (nearly) the whole backlog was still waiting.
    assert len(remaining_low) >= 190
    last_high = max(started[i] for i in high)
    assert last_high < min(remaining_low), "a low-priority job started before an urgent one"

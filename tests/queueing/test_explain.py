"""queueing.explain(job): every waiting job says why, in codes a script can act on."""

from __future__ import annotations

import pytest
from django.db import transaction

import queueing
from queueing.control.pause import pause_queue, resume_queue
from queueing.models import Job, JobStatus
from tests.harness import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def codes(job: Job) -> set[str]:
    return {reason["code"] for reason in queueing.explain(job)}


def test_reasons_for_waiting_jobs(celery_worker):
    later = queueing.enqueue("tests.record", ["later"], countdown=600)
    reasons = queueing.explain(later)
    assert reasons[0]["code"] == "scheduled" and reasons[0]["until"]

    with transaction.atomic():
        nobody = queueing.enqueue("tests.record", ["x"], queue="isolated", countdown=600)
    Job.objects.filter(id=nobody.id).update(status=JobStatus.QUEUED, run_at=None)
    assert "no_worker" in codes(nobody)  # only the tests' own workers consume it

    pause_queue("isolated")
    try:
        assert {"queue_paused", "no_worker"} <= codes(nobody)
    finally:
        resume_queue("isolated")

    retrying = queueing.enqueue("tests.record", ["r"], countdown=600)
    Job.objects.filter(id=retrying.id).update(status=JobStatus.RETRYING, attempts=1)
    assert "retry_backoff" in codes(retrying)


def test_running_and_finished_jobs(celery_worker):
    job = queueing.enqueue("tests.record", ["done"])
    Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING)
    assert queueing.explain(job) == []
    Job.objects.filter(id=job.id).update(status=JobStatus.SUCCEEDED)
    assert codes(job) == {"finished"}


def test_a_paused_queue_with_a_live_worker_is_paused_not_unserved(celery_worker):
    from queueing.registry import live_worker_entries

    with transaction.atomic():
        job = queueing.enqueue("tests.record", ["p"], queue="maintenance", countdown=600)
    Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED, run_at=None)
    pause_queue("maintenance")
    try:
        # The worker stops consuming the queue (its heartbeat says so) ...
        wait_until(
            lambda: all("maintenance" not in e["queues"] for e in live_worker_entries().values()),
            timeout=15,
        )
        reasons = codes(job)
        # ... and is still the queue's worker: paused is the whole answer.
        assert "queue_paused" in reasons and "no_worker" not in reasons
    finally:
        resume_queue("maintenance")
        Job.objects.filter(id=job.id).delete()

"""queueing.explain(job): every waiting job says why, in codes a script can act on."""

from __future__ import annotations

import pytest
from django.db import transaction

import queueing
from queueing.control.pause import pause_queue, resume_queue
from queueing.models import Job, JobStatus

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

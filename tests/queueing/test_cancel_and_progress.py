"""Cancel (durable for waiting jobs, cooperative or hard for running ones) and progress."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult
from django.db import transaction
from django_celery_results.models import TaskResult

import queueing
from queueing.control.operations import cancel
from queueing.ledger.enqueue import PublishSpec, publish
from queueing.models import AttemptOutcome, Job, JobStatus
from tests.harness import wait_until
from tests.sideeffects.models import SideEffect
from tests.worker_tasks import KEY_PREFIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def running(job_id) -> Job:
    return wait_until(
        lambda: Job.objects.filter(id=job_id, status=JobStatus.RUNNING).first(),
        timeout=30,
        message=f"job {job_id} to run",
    )


def test_a_cancelled_waiting_job_never_runs_even_if_delivered(celery_worker):
    with transaction.atomic():
        job = queueing.enqueue("tests.record", ["cancelled"], countdown=3600)
    assert cancel(job.id).outcome == "cancelled"

    publish(PublishSpec.of(job))  # a stray message arrives anyway

    wait_until(
        lambda: f"job {job.id}: delivery dropped" in celery_worker.log(last=500),
        timeout=30,
        message=celery_worker.log,
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.attempts == 0
    assert not SideEffect.objects.filter(key="cancelled").exists()
    assert cancel(job.id).outcome == "already final"


def test_a_running_job_stops_cooperatively(celery_worker, redis_client):
    job = queueing.enqueue("tests.cooperative", ["coop"])
    running(job.id)
    wait_until(lambda: redis_client.get(f"{KEY_PREFIX}:coop:step"), timeout=30)

    assert cancel(job.id).outcome == "requested"

    job = wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.CANCELLED).first(),
        timeout=30,
        message="the job to stop",
    )
    assert redis_client.get(f"{KEY_PREFIX}:coop:stopped_at") is not None
    assert [a.outcome for a in job.attempt_rows.all()] == [AttemptOutcome.CANCELLED]
    assert AsyncResult(str(job.id)).state == "REVOKED"


def test_terminate_kills_a_running_job(celery_worker, redis_client):
    job = queueing.enqueue("tests.slow_run", ["term", 30])
    running(job.id)
    wait_until(lambda: redis_client.lindex(f"{KEY_PREFIX}:term:started", 0), timeout=30)

    cancel(job.id, terminate=True)

    job = wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.CANCELLED).first(),
        timeout=30,
        message=lambda: f"the job to be terminated\n{celery_worker.log()}",
    )
    assert job.last_error_class == "taskyard.Terminated"
    assert redis_client.get(f"{KEY_PREFIX}:term:finished") is None
    assert celery_worker.is_alive()


def test_progress_is_visible_on_the_job_and_in_celery(celery_worker):
    job = queueing.enqueue("tests.cooperative", ["prog"], {"steps": 40})

    mid = wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.RUNNING, progress__gt=0).first(),
        timeout=30,
        message="progress while running",
    )
    assert mid.progress_message.startswith("step ")
    meta = wait_until(
        lambda: TaskResult.objects.filter(task_id=str(job.id), status="PROGRESS").first(),
        timeout=30,
        message="the PROGRESS state in the results table",
    )
    assert '"percent"' in meta.result
    done = wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.SUCCEEDED).first(), timeout=30
    )
    assert (done.progress, done.progress_message) == (100.0, "done")
    assert AsyncResult(str(job.id)).get(timeout=10) == "done"

"""Jobs through real worker processes: success, adoption, duplicates, retries, dead letters."""

from __future__ import annotations

import datetime as dt

import pytest
from celery import states
from celery.result import AsyncResult
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

import queueing
from config.celery import app as celery_app
from queueing.ledger.enqueue import PublishSpec, publish
from queueing.models import AttemptOutcome, DeadLetter, DeadLetterReason, Job, JobStatus
from queueing.tasks import ping
from tests.harness import wait_until
from tests.sideeffects.models import SideEffect
from tests.worker_tasks import KEY_PREFIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished(job_id, timeout: float = 30) -> Job:
    """Wait until the job reaches a final status and return it."""

    def final():
        job = Job.objects.filter(id=job_id).first()
        return job if job and job.status in ("succeeded", "dead", "cancelled") else None

    return wait_until(final, timeout=timeout, message=f"job {job_id} to finish")


def test_job_runs_once_and_its_result_is_everywhere(celery_worker):
    job = queueing.enqueue("tests.record", ["e2e"])

    job = finished(job.id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 1 and job.fencing_token == 1
    assert job.result == "e2e"
    assert job.lease_owner == "" and job.lease_expires_at is None
    assert job.started_at <= job.finished_at
    (attempt,) = job.attempt_rows.all()
    assert attempt.outcome == AttemptOutcome.SUCCEEDED
    assert attempt.worker.startswith(celery_worker.name + "/")
    assert SideEffect.objects.filter(job_id=job.id).count() == 1
    assert AsyncResult(str(job.id)).get(timeout=10) == "e2e"
    # Celery's result row, written with the outcome (one statement), as Celery writes it.
    row = TaskResult.objects.get(task_id=str(job.id))
    assert (row.status, row.task_name, row.worker) == (
        states.SUCCESS,
        "tests.record",
        celery_worker.name,
    )
    assert row.content_type == "application/json" and row.task_args == "\"['e2e']\""
    assert row.date_done is not None and row.date_done >= job.finished_at


def test_a_message_from_a_plain_celery_client_is_adopted(celery_worker):
    """`celery call`, Flower's API and other services publish with send_task, without
    the ledger; the worker creates the job row and tracks it like any other."""
    result = celery_app.send_task("tests.record", args=["adopted"], queue="default")

    job = finished(result.id)
    assert job.origin == "adopted"
    assert job.status == JobStatus.SUCCEEDED
    assert (job.task_name, job.queue, job.args) == ("tests.record", "default", ["adopted"])
    assert SideEffect.objects.filter(job_id=job.id).count() == 1


def test_duplicate_deliveries_are_dropped_by_the_claim(celery_worker):
    with transaction.atomic():
        job = queueing.enqueue("tests.record", ["dup"], countdown=3600)  # not published
    # Queued and marked published, as after a publish: the relay must not publish it a
    # fourth time (it would, for a queued job with no publish on record).
    Job.objects.filter(id=job.id).update(
        status=JobStatus.QUEUED, run_at=None, published_at=timezone.now()
    )
    spec = PublishSpec.of(job)
    for _ in range(3):
        publish(spec)

    assert finished(job.id).status == JobStatus.SUCCEEDED
    wait_until(
        lambda: celery_worker.log(last=500).count(f"job {job.id}: delivery dropped") == 2,
        timeout=30,
        message=lambda: f"two dropped deliveries in the worker log\n{celery_worker.log()}",
    )
    assert SideEffect.objects.filter(job_id=job.id).count() == 1
    assert Job.objects.get(id=job.id).attempts == 1


def test_permanent_error_is_dead_on_the_first_attempt(celery_worker, relay, redis_client):
    job = queueing.enqueue("tests.fail", ["permanent", "perm"])

    job = finished(job.id)
    assert job.status == JobStatus.DEAD
    assert job.attempts == 1
    assert job.last_error_class == "queueing.ledger.retry.PermanentError"
    assert "no billing address" in job.last_error_message
    assert "Traceback" in job.last_error_traceback
    letter = DeadLetter.objects.get(job=job)
    assert letter.reason == DeadLetterReason.PERMANENT and not letter.reviewed
    assert redis_client.lrange(f"{KEY_PREFIX}:perm:attempts", 0, -1) == ["1"]
    # Celery stores its FAILURE result after the ledger recorded the job dead.
    wait_until(
        lambda: AsyncResult(str(job.id)).state == states.FAILURE,
        timeout=10,
        message="Celery's FAILURE result stored",
    )


def test_transient_error_is_dead_after_max_attempts(celery_worker, relay, redis_client):
    job = queueing.enqueue("tests.fail", ["transient", "trans"])

    job = finished(job.id)
    assert job.status == JobStatus.DEAD
    assert job.attempts == 3  # the task's max_attempts
    assert [a.outcome for a in job.attempt_rows.all()] == ["retrying", "retrying", "dead"]
    assert {a.error_kind for a in job.attempt_rows.all()} == {"transient"}
    assert DeadLetter.objects.get(job=job).reason == DeadLetterReason.EXHAUSTED
    assert redis_client.lrange(f"{KEY_PREFIX}:trans:attempts", 0, -1) == ["1", "2", "3"]


def test_auth_error_gets_one_retry(celery_worker, relay, redis_client):
    job = finished(queueing.enqueue("tests.fail", ["auth", "auth"]).id)
    assert job.status == JobStatus.DEAD and job.attempts == 2


def test_transient_error_then_success(celery_worker, relay):
    job = queueing.enqueue("tests.fail", ["server_error", "heal"], {"succeed_on_attempt": 2})

    job = finished(job.id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert [a.outcome for a in job.attempt_rows.all()] == ["retrying", "succeeded"]
    assert AsyncResult(str(job.id)).get(timeout=10) == "ok"


def test_rate_limited_retry_waits_in_the_ledger(celery_worker, relay):
    job = queueing.enqueue("tests.fail", ["rate_limited", "rl"], {"succeed_on_attempt": 2})

    waiting = wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.RETRYING).first(),
        timeout=30,
        message="the job to wait as retrying",
    )
    # Waits as a row with run_at (0.3 s as the remote said), not as an ETA in a worker.
    assert waiting.run_at is not None and waiting.published_at is None
    assert finished(job.id).status == JobStatus.SUCCEEDED


def test_rolled_back_enqueue_never_runs(celery_worker, published):
    with pytest.raises(RuntimeError), transaction.atomic():
        ghost = queueing.enqueue("tests.record", ["ghost"])
        raise RuntimeError("rollback")
    sentinel = queueing.enqueue("tests.record", ["sentinel"])

    assert finished(sentinel.id).status == JobStatus.SUCCEEDED
    assert published == [str(sentinel.id)]
    assert not Job.objects.filter(id=ghost.id).exists()
    assert not SideEffect.objects.filter(key="ghost").exists()


def test_a_ledger_message_whose_job_is_gone_is_dropped_not_adopted(celery_worker):
    """A late duplicate of a job that retention already pruned must not run again."""
    with transaction.atomic():
        job = queueing.enqueue("tests.record", ["pruned"], countdown=3600)
    spec = PublishSpec.of(job)
    Job.objects.filter(id=job.id).delete()
    publish(spec)

    wait_until(
        lambda: f"job {job.id}: delivery dropped" in celery_worker.log(last=500),
        timeout=30,
        message=celery_worker.log,
    )
    assert not Job.objects.filter(id=job.id).exists()
    assert not SideEffect.objects.filter(key="pruned").exists()


def test_an_expired_message_cancels_its_job(celery_worker):
    result = ping.apply_async(["too late"], expires=timezone.now() - dt.timedelta(seconds=1))

    job = finished(result.id)
    assert job.status == JobStatus.CANCELLED
    assert job.last_error_class == "taskyard.Expired"
    assert job.attempts == 0  # never ran

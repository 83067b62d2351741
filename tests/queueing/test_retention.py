"""Retention: finished jobs past their queue's retention go, in batches, with their
attempts, dead letters and results; everything else stays."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueing.control.retention import prune
from queueing.models import DeadLetter, Job, JobAttempt, JobStatus
from tests.factories import dead_letter_row

pytestmark = pytest.mark.django_db

HOUR = 3600


def job(status: str, age_hours: float, queue: str = "default") -> Job:
    now = timezone.now()
    finished = now - dt.timedelta(hours=age_hours)
    created = Job.objects.create(
        id=uuid.uuid4(),
        task_name="tests.record",
        queue=queue,
        status=status,
        max_attempts=3,
        attempts=1,
        enqueued_at=finished,
        finished_at=finished,
    )
    JobAttempt.objects.create(
        job=created,
        number=1,
        fencing_token=1,
        worker="w/1",
        started_at=finished,
        finished_at=finished,
        duration_ms=5,
        outcome="succeeded",
    )
    TaskResult.objects.create(task_id=str(created.id), status="SUCCESS")
    if status == JobStatus.DEAD:
        dead_letter_row(created)
    return created


def billing_retention(settings, seconds: float) -> None:
    queues = {**settings.TASKYARD_QUEUES}
    queues["billing"] = {"concurrency": 1, "retention": {"succeeded": seconds}}
    settings.TASKYARD_QUEUES = queues


def test_prune_keeps_what_is_young_or_active_and_deletes_the_rest(settings):
    billing_retention(settings, 72 * HOUR)
    old_ok = [job(JobStatus.SUCCEEDED, 30) for _ in range(5)]
    young_ok = job(JobStatus.SUCCEEDED, 2)
    billing_ok = job(JobStatus.SUCCEEDED, 30, queue="billing")  # kept 72 h there
    old_dead = job(JobStatus.DEAD, 8 * 24)
    young_dead = job(JobStatus.DEAD, 3 * 24)
    running = Job.objects.create(
        task_name="tests.record",
        queue="default",
        status=JobStatus.RUNNING,
        max_attempts=3,
        enqueued_at=timezone.now() - dt.timedelta(days=30),
    )

    assert prune(dry_run=True) == {"succeeded": 5, "dead": 1, "cancelled": 0}
    counts = prune(batch_size=2)  # several batches

    assert counts == {"succeeded": 5, "dead": 1, "cancelled": 0}
    gone = [j.id for j in old_ok] + [old_dead.id]
    assert not Job.objects.filter(id__in=gone).exists()
    assert not JobAttempt.objects.filter(job_id__in=gone).exists()
    assert not DeadLetter.objects.filter(job_id=old_dead.id).exists()
    assert not TaskResult.objects.filter(task_id__in=[str(i) for i in gone]).exists()
    kept = {young_ok.id, billing_ok.id, young_dead.id, running.id}
    assert set(Job.objects.values_list("id", flat=True)) == kept


def test_retention_never_undercuts_the_visibility_timeout(settings):
    billing_retention(settings, 1)
    recent = job(JobStatus.SUCCEEDED, 0.01, queue="billing")  # older than 1 s
    prune()
    assert Job.objects.filter(id=recent.id).exists()


def test_prune_command_reports(capsys):
    job(JobStatus.SUCCEEDED, 48)
    call_command("prune_jobs", "--dry-run")
    assert "would delete: succeeded 1, dead 0, cancelled 0" in capsys.readouterr().out
    call_command("prune_jobs")
    assert "deleted: succeeded 1" in capsys.readouterr().out
    assert not Job.objects.exists()

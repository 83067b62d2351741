"""Cron through django-celery-beat: seeded platform schedules, one beat at a time, and
every run a tracked job."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from queueing.models import Job
from tests.harness import start_beat, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_platform_schedules_are_seeded_once_and_edits_survive(capsys):
    call_command("seed_schedules")  # the migration already did; this finds them
    task = PeriodicTask.objects.get(name="taskyard: prune finished jobs")
    assert (task.task, task.queue, task.crontab.minute) == (
        "queueing.prune_jobs",
        "maintenance",
        "17",
    )
    task.enabled = False
    task.save()
    call_command("seed_schedules")
    assert "all present" in capsys.readouterr().out
    assert not PeriodicTask.objects.get(name="taskyard: prune finished jobs").enabled


@pytest.mark.worker
def test_two_beats_one_schedule(celery_worker):
    PeriodicTask.objects.update(enabled=False)  # only ours below
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.create(
        name="test: every second", task="tests.record", args='["beat"]', interval=every_second
    )
    first = start_beat()
    second = start_beat()

    def logs() -> str:
        return first.log(last=500) + second.log(last=500)

    try:
        # Both up (a loaded machine takes seconds to start one): one holds the lock.
        wait_until(
            lambda: "holds the beat lock" in logs() and "standing by" in logs(),
            timeout=60,
            interval=0.2,
            message=logs,
        )
        jobs = wait_until(
            lambda: (
                (found := list(Job.objects.filter(args=["beat"]).order_by("enqueued_at")))
                and len(found) >= 6
                and found
            ),
            timeout=60,
            interval=0.2,
            message=lambda: f"six beat jobs\n{first.log()}\n{second.log()}",
        )
    finally:
        first.stop()
        second.stop()

    # One schedule at 1/s: six runs take about five seconds; two beats would take half.
    span = (jobs[5].enqueued_at - jobs[0].enqueued_at).total_seconds()
    assert span >= 4.0, f"6 runs in {span:.1f}s: more than one beat is scheduling"

"""Queue statistics history: one row per queue and 5-minute bucket, written once, kept 30
days; the stats and metrics API and /metrics read it (and the workers' minute roll-ups)
instead of the ledger."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

import queueing
from queueing.control.schedules import _entry
from queueing.counters import observe_attempt
from queueing.models import Job, JobStatus, QueueStat
from queueing.observe.history import bucket_start, prune, snapshot
from tests.factories import ended_attempt
from tests.harness import delete_keys, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime(2026, 11, 20, 10, 7, 30, tzinfo=dt.UTC)
BUCKET = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)  # the one that ended before NOW


def bucket_fixture(start: dt.datetime, queue: str = "isolated") -> None:
    """Five attempts ending inside [start, start + 5 min) on ``queue``, two just outside.

    runs 50, 100, 200, 300, 400 ms; waits 500, 1000, 2000, 3000, 4000 ms;
    3 succeeded, 1 retrying, 1 dead."""
    at = start + dt.timedelta(minutes=1)
    for ms, wait in ((100, 1000), (200, 2000), (300, 3000)):
        ended_attempt(queue=queue, duration_ms=ms, wait_ms=wait, finished_at=at)
    ended_attempt(queue=queue, outcome="retrying", duration_ms=50, wait_ms=500, finished_at=at)
    ended_attempt(queue=queue, outcome="dead", duration_ms=400, wait_ms=4000, finished_at=at)
    # the bucket is [start, end): these belong to its neighbours
    ended_attempt(queue=queue, finished_at=start - dt.timedelta(microseconds=1))
    ended_attempt(queue=queue, finished_at=start + dt.timedelta(minutes=5))


def test_a_snapshot_writes_each_bucket_once_with_its_numbers():
    bucket_fixture(BUCKET)
    waiting = []
    for minutes in (3, 1):
        job = queueing.enqueue("tests.record", [f"w{minutes}"], queue="isolated")
        Job.objects.filter(id=job.id).update(enqueued_at=NOW - dt.timedelta(minutes=minutes))
        waiting.append(job)

    first = snapshot(NOW)
    assert first == {
        "bucket": BUCKET.isoformat(),
        "buckets": 1,
        "created": len(QueueStat.objects.all()),
    }
    row = QueueStat.objects.get(queue="isolated", bucket=BUCKET)
    assert (row.attempts, row.succeeded, row.failed, row.died) == (5, 3, 2, 1)
    assert row.failure_rate == 0.4
    assert row.throughput_per_minute == 0.6  # 3 succeeded in 5 minutes
    assert (row.run_p50_ms, row.run_p95_ms, row.run_p99_ms) == (200, 400, 400)
    assert (row.wait_p50_ms, row.wait_p95_ms, row.wait_p99_ms) == (2000, 4000, 4000)
    # run-time buckets (counters.RUN_BUCKETS): 50 ms ≤ 0.05, 100 ≤ 0.1, 200 ≤ 0.25, 300 and
    # 400 ≤ 0.5 s
    assert row.run_histogram == {"1": 1, "2": 1, "3": 1, "4": 2}
    # counts when taken: the two waiting jobs, the retrying and the dead one
    assert (row.queued, row.retrying, row.dead, row.running, row.scheduled) == (2, 1, 1, 0, 0)
    assert row.oldest_waiting_seconds == 180.0
    assert QueueStat.objects.get(queue="default", bucket=BUCKET).attempts == 0

    # A rerun, a second beat a few seconds later, a retried job: nothing doubles or changes.
    ended_attempt(queue="isolated", finished_at=BUCKET + dt.timedelta(minutes=2))
    assert snapshot(NOW)["created"] == 0
    assert snapshot(NOW + dt.timedelta(seconds=20))["created"] == 0
    assert QueueStat.objects.filter(bucket=BUCKET).count() == first["created"]
    assert QueueStat.objects.get(queue="isolated", bucket=BUCKET).attempts == 5
    # The next bucket is a new row.
    assert snapshot(NOW + dt.timedelta(minutes=5))["created"] == first["created"]


def test_a_snapshot_waits_for_late_commits_then_catches_up_every_missed_bucket():
    """At the bucket's edge an attempt that ended just before it may not be committed
    yet: the bucket is written 30 s later. A snapshot that ran late (a backup held its
    queue, beat was down) writes every bucket since the last one, as far back as the
    minute roll-ups reach (2 h), each with its own attempts."""
    edge = BUCKET + dt.timedelta(minutes=5)
    snapshot(BUCKET - dt.timedelta(minutes=4))  # history exists up to BUCKET - 10 min
    assert QueueStat.objects.latest("bucket").bucket == BUCKET - dt.timedelta(minutes=10)
    ended_attempt(queue="isolated", finished_at=edge - dt.timedelta(seconds=1))

    assert (
        snapshot(edge + dt.timedelta(seconds=5))["bucket"]
        == (BUCKET - dt.timedelta(minutes=5)).isoformat()
    )
    assert not QueueStat.objects.filter(bucket=BUCKET).exists()
    assert snapshot(edge + dt.timedelta(seconds=31))["buckets"] == 1
    assert QueueStat.objects.get(queue="isolated", bucket=BUCKET).attempts == 1

    # 30 minutes without a snapshot (a 20-minute backup, say): six buckets missed.
    for minutes in (2, 7, 12, 17, 22, 27):
        ended_attempt(queue="isolated", finished_at=edge + dt.timedelta(minutes=minutes))
    late = snapshot(edge + dt.timedelta(minutes=30, seconds=40))
    per_bucket = QueueStat.objects.filter(bucket=BUCKET).count()
    assert (late["buckets"], late["created"]) == (6, 6 * per_bucket)
    caught_up = QueueStat.objects.filter(queue="isolated", bucket__gt=BUCKET).order_by("bucket")
    assert [(row.bucket - edge, row.attempts) for row in caught_up] == [
        (dt.timedelta(minutes=m), 1) for m in (0, 5, 10, 15, 20, 25)
    ]

    # Down for a day: only the last 2 hours (24 buckets) come back.
    day_later = snapshot(edge + dt.timedelta(days=1, minutes=1))
    assert day_later["buckets"] == 24
    assert QueueStat.objects.latest("bucket").bucket == BUCKET + dt.timedelta(days=1)


def test_retention_deletes_rows_older_than_30_days_only(settings):
    def row(age: dt.timedelta) -> QueueStat:
        return QueueStat.objects.create(queue="default", bucket=NOW - age, taken_at=NOW - age)

    old = [row(dt.timedelta(days=30, minutes=5)), row(dt.timedelta(days=45))]
    kept = [row(dt.timedelta(days=29, hours=23)), row(dt.timedelta(minutes=5))]
    assert prune(NOW)["deleted"] == len(old)
    assert set(QueueStat.objects.values_list("id", flat=True)) == {r.id for r in kept}
    settings.HISTORY_RETENTION_DAYS = 1
    assert prune(NOW)["deleted"] == 1
    assert prune(NOW)["deleted"] == 0


def test_history_schedules_are_seeded_with_the_snapshot_off_the_maintenance_queue(settings):
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("crontab")}
    snap = tasks["taskyard: snapshot queue stats"]
    # The snapshot and the alert check must not wait behind a backup (one slot).
    assert (snap.task, snap.queue, snap.priority) == (
        "queueing.snapshot_queue_stats",
        "default",
        9,
    )
    assert tasks["taskyard: check alerts"].queue == "default"
    assert (snap.crontab.minute, snap.crontab.hour) == ("*/5", "*")
    assert str(snap.crontab.timezone) == settings.TIME_ZONE
    for name, hour in (("taskyard: prune queue stats", "2"), ("taskyard: daily report", "0")):
        entry = tasks[name]
        assert (entry.queue, entry.priority) == ("maintenance", 9)
        assert (entry.crontab.minute, entry.crontab.hour) == ("0", hour)
        assert str(entry.crontab.timezone) == settings.BUSINESS_TIME_ZONE == "Europe/Amsterdam"
    with pytest.raises(ImproperlyConfigured, match="'Mars/Olympus' is not a known time zone"):
        _entry(
            "queueing",
            "x",
            {"task": "queueing.daily_report", "cron": "0 0 * * *", "timezone": "Mars/Olympus"},
        )


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def test_stats_and_metrics_add_history_rows_and_minute_rollups(admin_client):
    """A known fixture on the isolated queue (no worker writes there): one history bucket
    ten minutes back, and this minute's roll-up as a worker writes it."""
    delete_keys("taskyard:minute:isolated:*")
    from django.utils import timezone

    # The roll-up written below must still be "this minute" when the series is read: start
    # early in a minute, not in its last seconds (a boundary crossed mid-test made the last
    # point an empty new minute).
    wait_until(lambda: time.time() % 60 < 45, timeout=20, interval=0.2)
    now = timezone.now()
    history_bucket = bucket_start(now) - dt.timedelta(minutes=10)
    bucket_fixture(history_bucket)
    snapshot(history_bucket + dt.timedelta(minutes=5, seconds=31))
    for outcome, seconds in (("succeeded", 0.04), ("succeeded", 0.04), ("dead", 2.0)):
        observe_attempt("isolated", "tests.record", outcome, seconds, wait_seconds=0.1)
    queued = queueing.enqueue("tests.record", ["waits"], queue="isolated")
    Job.objects.filter(id=queued.id).update(enqueued_at=now - dt.timedelta(seconds=90))

    stats = admin_client.get("/api/v1/queue/stats/isolated").json()
    # history: 5 attempts (3 ok, 2 failed); roll-up: 3 (2 ok, 1 dead)
    assert stats["attempts"] == 8
    assert (stats["succeeded"], stats["failed"], stats["failure_rate"]) == (5, 3, 0.375)
    assert stats["throughput_per_minute"] == round(5 / 60, 3)
    # run-time buckets: 3 of ≤50 ms, 1 ≤100, 1 ≤250, 2 ≤500, 1 ≤2.5 s (upper edges)
    assert (stats["run_ms_p50"], stats["run_ms_p95"]) == (100.0, 2500.0)
    assert stats["counts"]["queued"] == 1
    assert stats["counts"]["retrying"] == 1 and stats["counts"]["dead"] == 1
    assert stats["oldest_waiting_seconds"] >= 90
    # a 3-minute window holds only this minute's roll-up
    short = admin_client.get("/api/v1/queue/stats/isolated?minutes=3").json()
    assert (short["attempts"], short["succeeded"], short["failed"]) == (3, 2, 1)

    series = admin_client.get("/api/v1/queue/metrics?queue=isolated&minutes=60").json()["series"]
    assert len(series) == 60
    last = series[-1]
    assert (last["source"], last["succeeded"], last["failed"], last["backlog"]) == (
        "minute",
        2,
        1,
        1,
    )
    from_history = [p for p in series if p["source"] == "history"]
    assert len(from_history) == 5  # the bucket's five minutes, its counts spread evenly
    assert {p["succeeded"] for p in from_history} == {0.6}
    assert sum(p["succeeded"] for p in series) == pytest.approx(5)
    assert all(p["backlog"] is None for p in series[:-1])

    samples = scrape(admin_client)
    assert samples[("taskyard_jobs", (("queue", "isolated"), ("status", "queued")))] == 1
    assert samples[("taskyard_jobs", (("queue", "isolated"), ("status", "succeeded")))] == (
        Job.objects.filter(queue="isolated", status=JobStatus.SUCCEEDED).count()
    )
    assert samples[("taskyard_jobs_estimated", ())] == 0
    assert samples[("taskyard_queue_oldest_age_seconds", (("queue", "isolated"),))] >= 90


@pytest.mark.worker
def test_the_declared_job_writes_the_history_on_a_real_worker(celery_worker):
    QueueStat.objects.all().delete()
    job = queueing.enqueue("queueing.snapshot_queue_stats")
    assert job.queue == "default" and job.priority == 9
    wait_until(
        lambda: Job.objects.get(id=job.id).status == JobStatus.SUCCEEDED,
        timeout=30,
        message=celery_worker.log,
    )
    assert QueueStat.objects.count() >= len(queueing_queues())


def queueing_queues() -> list[str]:
    from django.conf import settings

    return list(settings.TASKYARD_QUEUES)

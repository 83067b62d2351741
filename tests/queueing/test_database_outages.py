"""Workers keep their database connection across jobs (queueing/worker/connections.py):
PostgreSQL dropping every connection mid-drain (pg_terminate_backend: a failover, a
restart, PgBouncer recycling) loses no job and commits no atomic effect twice."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from queueing.models import Job, JobStatus
from queueing.tasks import ping
from tests.harness import start_worker, wait_until
from tests.queueing.test_recovery import (
    assert_each_ran_exactly_once,
    enqueue_many,
    wait_all_succeeded,
)
from tests.sideeffects.models import SideEffect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

KILLS = 5


def terminate_other_backends() -> int:
    """Kill every other session of this database (workers, relay), as an operator or a
    failover would; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_connections_killed_mid_drain_lose_nothing(relay):
    worker = start_worker(queues=["isolated"], concurrency=2)
    try:
        ids = enqueue_many(400, "pgkill", queue="isolated", seconds=0.02)
        killed = []
        for round_ in range(KILLS):
            # Kill while jobs run: after each fifth of the drain.
            wait_until(
                lambda r=round_: (
                    SideEffect.objects.filter(job_id__in=ids).count()
                    >= (r + 1) * len(ids) // (KILLS + 1)
                ),
                timeout=120,
                interval=0.02,
                message=worker.log,
            )
            killed.append(terminate_other_backends())
        assert sum(killed) >= KILLS, f"no worker connection to kill: {killed}"
        # A job whose claim or outcome met a dead connection is retried on a new one at
        # once (or, at worst, when its lease lapses); none is lost.
        wait_all_succeeded(ids, timeout=180, describe=worker.log)
        # The worker's main process writes to the database too (Celery records a
        # revoked or expired message): its kept connection was killed as well.
        terminate_other_backends()
        late = ping.apply_async(["too late"], queue="isolated", expires=timezone.now())
        wait_until(
            lambda: Job.objects.get(id=late.id).status == JobStatus.CANCELLED,
            timeout=30,
            message=worker.log,
        )
        assert worker.is_alive() and worker.answers_ping()
    finally:
        worker.stop()
    assert_each_ran_exactly_once(ids)
    assert not Job.objects.filter(id__in=ids).exclude(status=JobStatus.SUCCEEDED).exists()

"""No-op tasks for bench/throughput.py: the same body as bare Celery and as a tracked job.

Both return ``[sent_at, started_at]``: the caller's time.time() just before ``.delay()``
and time.time() when the body starts, so enqueue-to-start is measured the same way for
both, from the stored result (the results table for one, ``Job.result`` for the other).
``tracked_effect`` is the tracked one with a side effect, for bench/outages.py.
"""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="bench.bare_noop", tracked=False)
def bare_noop(sent_at: float) -> list[float]:
    """Plain Celery (``tracked = False``); django-celery-results stores the result."""
    return [sent_at, time.time()]


@shared_task(name="bench.tracked_noop")
def tracked_noop(sent_at: float) -> list[float]:
    """A Taskyard tracked job: Job row, claim under a lease, outcome in the ledger."""
    return [sent_at, time.time()]


# bench/outages.py counts how often each job's body committed, as the tests do with their
# SideEffect model; the bench runs on config.settings (no test apps), so a plain table,
# bench_side_effect (job_id).


def create_effect_table() -> None:
    """Create (or empty) the side-effect table of :func:`tracked_effect`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_side_effect (job_id VARCHAR(36) NOT NULL)")
        cursor.execute("DELETE FROM bench_side_effect")


@shared_task(bind=True, name="bench.tracked_effect", atomic=True)
def tracked_effect(self, sent_at: float) -> list[float]:
    """A tracked job whose body writes one row in its own transaction (``atomic``): the
    row commits once per success, so two rows for a job mean its effect ran twice."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_side_effect (job_id) VALUES (%s)", [str(self.job_id)])
    return [sent_at, time.time()]

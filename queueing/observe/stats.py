"""Queue statistics for the API (and the admin dashboard): counts per queue and status,
and what finished in a recent window, from the ledger's indexed columns."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone

from queueing.control.pause import paused_queues_in_database
from queueing.models import AttemptOutcome, Job, JobAttempt, JobStatus

FAILED_OUTCOMES = (AttemptOutcome.RETRYING, AttemptOutcome.DEAD, AttemptOutcome.LOST)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (any order); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def status_counts(statuses=None) -> dict[str, dict[str, int]]:
    """Queue -> status -> number of jobs, for ``statuses`` (default: all).

    COUNT(*) over the (queue, status) indexes, covering, and the statuses written into
    the SQL rather than bound: SQLite uses a partial index (job_open_idx) only when the
    query's WHERE matches its condition literally. They are our own constants, never
    input."""
    table = connection.ops.quote_name(Job._meta.db_table)
    sql = f"SELECT queue, status, COUNT(*) FROM {table}"  # noqa: S608 - constants only
    if statuses is not None:
        literal = ", ".join(f"'{JobStatus(status).value}'" for status in statuses)
        sql += f" WHERE status IN ({literal})"
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(sql + " GROUP BY queue, status")
        for queue, status, count in cursor.fetchall():
            counts[queue][status] = count
    return counts


def oldest_waiting(queues: Iterable[str] | None = None) -> dict[str, dt.datetime]:
    """Queue -> when its oldest waiting (queued) job was enqueued, for the queues that
    have one; ``queues`` limits the search (default: every queue)."""
    waiting = Job.objects.filter(status=JobStatus.QUEUED)
    if queues is not None:
        waiting = waiting.filter(queue__in=queues)
    return dict(waiting.values("queue").annotate(at=Min("enqueued_at")).values_list("queue", "at"))


def queue_overview(queues: list[str] | None = None) -> list[dict]:
    """Per declared queue: jobs per status, age of the oldest waiting job, paused flag."""
    queues = queues or list(settings.TASKYARD_QUEUES)
    counts = status_counts()
    oldest = oldest_waiting(queues)
    paused = paused_queues_in_database()
    now = timezone.now()
    return [
        {
            "queue": queue,
            "paused": queue in paused,
            "counts": {status: counts[queue].get(status, 0) for status in JobStatus.values},
            "oldest_waiting_seconds": (
                round((now - oldest[queue]).total_seconds(), 3) if queue in oldest else None
            ),
        }
        for queue in queues
    ]


def window_stats(queue: str | None = None, minutes: int = 60) -> dict:
    """Attempts that finished in the last ``minutes``: throughput, failure rate, run time."""
    since = timezone.now() - dt.timedelta(minutes=minutes)
    attempts = JobAttempt.objects.filter(finished_at__gte=since)
    if queue:
        attempts = attempts.filter(job__queue=queue)
    rows = list(attempts.values_list("outcome", "duration_ms"))
    succeeded = sum(1 for outcome, _ in rows if outcome == AttemptOutcome.SUCCEEDED)
    failed = sum(1 for outcome, _ in rows if outcome in FAILED_OUTCOMES)
    durations = [ms for _, ms in rows if ms is not None]
    return {
        "window_minutes": minutes,
        "attempts": len(rows),
        "succeeded": succeeded,
        "failed": failed,
        "failure_rate": round(failed / len(rows), 4) if rows else 0.0,
        "throughput_per_minute": round(succeeded / minutes, 3),
        "run_ms_p50": percentile(durations, 50),
        "run_ms_p95": percentile(durations, 95),
    }


def time_series(minutes: int = 60, queue: str | None = None) -> list[dict]:
    """One point per minute over the last ``minutes``: finished, failed, run time p50/p95,
    and (for the current minute only) the backlog."""
    now = timezone.now().replace(second=0, microsecond=0)
    since = now - dt.timedelta(minutes=minutes - 1)
    attempts = JobAttempt.objects.filter(finished_at__gte=since)
    if queue:
        attempts = attempts.filter(job__queue=queue)
    buckets: dict[dt.datetime, list[tuple[str, int | None]]] = defaultdict(list)
    for outcome, ms, finished in attempts.values_list("outcome", "duration_ms", "finished_at"):
        buckets[finished.replace(second=0, microsecond=0)].append((outcome, ms))
    waiting = Job.objects.filter(status=JobStatus.QUEUED)
    if queue:
        waiting = waiting.filter(queue=queue)
    backlog = waiting.count()
    points = []
    for index in range(minutes):
        minute = since + dt.timedelta(minutes=index)
        rows = buckets.get(minute, [])
        durations = [ms for _, ms in rows if ms is not None]
        failed = sum(1 for outcome, _ in rows if outcome in FAILED_OUTCOMES)
        points.append(
            {
                "minute": minute.isoformat(),
                "succeeded": sum(1 for outcome, _ in rows if outcome == AttemptOutcome.SUCCEEDED),
                "failed": failed,
                "failure_rate": round(failed / len(rows), 4) if rows else 0.0,
                "run_ms_p50": percentile(durations, 50),
                "run_ms_p95": percentile(durations, 95),
                "backlog": backlog if minute == now else None,
            }
        )
    return points

"""Queue statistics history: one QueueStat row per queue and 5-minute bucket, kept
HISTORY_RETENTION_DAYS (docs/monitoring.md, "History").

``snapshot()`` runs every 5 minutes (``queueing.snapshot_queue_stats`` on the maintenance
queue) and writes the bucket that just ended. Its cost is bounded by the bucket, not the
ledger: the attempts that ended in it (a range of the index attempt_finished_idx, joined
to their jobs by primary key) and the live counts over the partial indexes job_open_idx
and job_waiting_idx. A rerun, or two beats firing at once, leaves a written bucket alone
(unique on queue and bucket). ``prune()`` deletes rows past retention, in batches.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from django.conf import settings
from django.utils import timezone

from queueing.counters import RUN_BUCKETS
from queueing.models import AttemptOutcome, JobAttempt, QueueStat
from queueing.observe.stats import (
    BUCKET,
    FAILED_OUTCOMES,
    OPEN_STATUSES,
    oldest_waiting,
    percentile,
    status_counts,
)

logger = logging.getLogger(__name__)

# Rows deleted per statement by prune(): 30 days of 5-minute rows of 10 queues is 86,400
# rows; batches keep each delete's lock short on a table the API reads.
PRUNE_BATCH = 5000


def bucket_start(moment: dt.datetime) -> dt.datetime:
    """The start of the 5-minute bucket ``moment`` falls in (UTC)."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


def _run_bucket(seconds: float) -> str:
    for index, edge in enumerate(RUN_BUCKETS):
        if seconds <= edge:
            return str(index)
    return "inf"


def _attempts(start: dt.datetime, end: dt.datetime) -> dict[str, list[tuple]]:
    """Queue -> (outcome, run ms, wait ms) of every attempt that ended in [start, end).
    Wait: from the job's enqueue (or its due time, when later) to the attempt's start."""
    rows = JobAttempt.objects.filter(finished_at__gte=start, finished_at__lt=end).values_list(
        "job__queue", "outcome", "duration_ms", "started_at", "job__enqueued_at", "job__run_at"
    )
    out: dict[str, list[tuple]] = defaultdict(list)
    for queue, outcome, ms, started, enqueued, run_at in rows.iterator(chunk_size=2000):
        due = max(enqueued, run_at) if run_at and run_at <= started else enqueued
        out[queue].append((outcome, ms, max(0.0, (started - due).total_seconds() * 1000)))
    return out


def compute(start: dt.datetime, now: dt.datetime | None = None) -> list[QueueStat]:
    """The rows (unsaved) of bucket ``start`` for every declared queue."""
    now = now or timezone.now()
    end = start + BUCKET
    counts = status_counts(OPEN_STATUSES)
    oldest = oldest_waiting()
    attempts = _attempts(start, end)
    rows = []
    for queue in settings.TASKYARD_QUEUES:
        ended = attempts.get(queue, [])
        runs = [ms for _, ms, _ in ended]
        waits = [wait for _, _, wait in ended]
        succeeded = sum(1 for outcome, _, _ in ended if outcome == AttemptOutcome.SUCCEEDED)
        failed = sum(1 for outcome, _, _ in ended if outcome in FAILED_OUTCOMES)
        histogram: dict[str, int] = defaultdict(int)
        for ms in runs:
            histogram[_run_bucket(ms / 1000)] += 1
        since = oldest.get(queue)
        rows.append(
            QueueStat(
                queue=queue,
                bucket=start,
                taken_at=now,
                **{s: counts[queue].get(s, 0) for s in OPEN_STATUSES},
                oldest_waiting_seconds=(
                    round((now - since).total_seconds(), 3) if since is not None else None
                ),
                attempts=len(ended),
                succeeded=succeeded,
                failed=failed,
                died=sum(1 for outcome, _, _ in ended if outcome == AttemptOutcome.DEAD),
                throughput_per_minute=round(succeeded / (BUCKET.total_seconds() / 60), 3),
                failure_rate=round(failed / len(ended), 4) if ended else 0.0,
                wait_p50_ms=percentile(waits, 50),
                wait_p95_ms=percentile(waits, 95),
                wait_p99_ms=percentile(waits, 99),
                run_p50_ms=percentile(runs, 50),
                run_p95_ms=percentile(runs, 95),
                run_p99_ms=percentile(runs, 99),
                run_histogram=dict(histogram),
            )
        )
    return rows


def snapshot(now: dt.datetime | None = None) -> dict:
    """Write the bucket that ended last (before ``now``) for every declared queue, unless
    written already. Returns the bucket and how many rows this call created."""
    now = now or timezone.now()
    start = bucket_start(now) - BUCKET
    written = set(QueueStat.objects.filter(bucket=start).values_list("queue", flat=True))
    fresh = [row for row in compute(start, now) if row.queue not in written]
    # ignore_conflicts: a concurrent snapshot of the same bucket wins, this one adds nothing
    QueueStat.objects.bulk_create(fresh, ignore_conflicts=True)
    created = QueueStat.objects.filter(bucket=start).count() - len(written)
    logger.info("history: bucket %s, %d queue rows written", start.isoformat(), created)
    return {"bucket": start.isoformat(), "created": created}


def prune(now: dt.datetime | None = None) -> dict:
    """Delete history rows older than HISTORY_RETENTION_DAYS, PRUNE_BATCH at a time."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.HISTORY_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(
            QueueStat.objects.filter(bucket__lt=cutoff).values_list("id", flat=True)[:PRUNE_BATCH]
        )
        if not ids:
            break
        deleted += QueueStat.objects.filter(id__in=ids).delete()[0]
    logger.info("history: %d rows older than %s deleted", deleted, cutoff.isoformat())
    return {"deleted": deleted, "cutoff": cutoff.isoformat()}

"""Queue statistics history: one QueueStat row per queue and 5-minute bucket, kept
HISTORY_RETENTION_DAYS (docs/monitoring.md, "History").

``snapshot()`` runs every 5 minutes (``queueing.snapshot_queue_stats`` on the default
queue, so a long backup on the one-slot maintenance queue cannot hold it up) and writes
every bucket that ended (SNAPSHOT_LAG ago) since the newest one written, up to
CATCH_UP_BUCKETS: a late run loses no bucket. A caught-up bucket's live counts (queued,
running, oldest waiting) are those seen when it was written (``taken_at``). Its cost is
bounded by the buckets, not the ledger: the attempts that ended in them (a range of the
index attempt_finished_idx, joined to their jobs by primary key) and the live counts over
the partial indexes job_open_idx and job_waiting_idx. A rerun, or two beats firing at
once, leaves a written bucket alone (unique on queue and bucket). ``prune()`` deletes
rows past retention, in batches.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from queueing.counters import MINUTE_TTL_SECONDS, RUN_BUCKETS, WAIT_BUCKETS, bucket_key
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
# A snapshot writes only buckets that ended this long ago: an attempt that finished just
# before the edge commits a moment later, and the snapshot is seeded at the edge itself.
SNAPSHOT_LAG = dt.timedelta(seconds=30)
# A late snapshot (beat down, a busy queue) catches up at most this many missed buckets:
# as far back as the workers' minute roll-ups reach (MINUTE_TTL_SECONDS), the window the
# stats read from Redis where no history row covers it. Older gaps stay gaps.
CATCH_UP_BUCKETS = MINUTE_TTL_SECONDS // 300


def bucket_start(moment: dt.datetime) -> dt.datetime:
    """The start of the 5-minute bucket ``moment`` falls in (UTC)."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


def compute(start: dt.datetime, now: dt.datetime | None = None) -> list[QueueStat]:
    """The rows (unsaved) of bucket ``start`` for every declared queue."""
    return compute_buckets([start], now)


def compute_buckets(starts: list[dt.datetime], now: dt.datetime | None = None) -> list[QueueStat]:
    """The rows (unsaved) of the buckets ``starts`` (ascending) for every declared queue:
    the attempts of each bucket, and the live counts as seen ``now`` (one read for all,
    so a catch-up of missed buckets costs one range of attempts, not one per bucket)."""
    if not starts:
        return []
    now = now or timezone.now()
    counts = status_counts(OPEN_STATUSES)
    oldest = oldest_waiting()
    rows = []
    by_bucket = _attempts_by_bucket(starts[0], starts[-1] + BUCKET)
    for start in starts:
        attempts = by_bucket.get(start, {})
        rows.extend(_rows(start, now, attempts, counts, oldest))
    return rows


def _attempts_by_bucket(start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, dict]:
    """Bucket start -> queue -> attempts (as _attempts) of every attempt in [start, end)."""
    out: dict[dt.datetime, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    rows = JobAttempt.objects.filter(finished_at__gte=start, finished_at__lt=end).values_list(
        "job__queue",
        "outcome",
        "duration_ms",
        "started_at",
        "job__enqueued_at",
        "job__run_at",
        "finished_at",
    )
    for queue, outcome, ms, started, enqueued, run_at, finished in rows.iterator(chunk_size=2000):
        due = max(enqueued, run_at) if run_at and run_at <= started else enqueued
        wait = max(0.0, (started - due).total_seconds() * 1000)
        out[bucket_start(finished)][queue].append((outcome, ms, wait))
    return out


def _rows(
    start: dt.datetime,
    now: dt.datetime,
    attempts: dict[str, list[tuple]],
    counts: dict[str, dict[str, int]],
    oldest: dict[str, dt.datetime],
) -> list[QueueStat]:
    rows = []
    for queue in settings.TASKYARD_QUEUES:
        ended = attempts.get(queue, [])
        runs = [ms for _, ms, _ in ended]
        waits = [wait for _, _, wait in ended]
        succeeded = sum(1 for outcome, _, _ in ended if outcome == AttemptOutcome.SUCCEEDED)
        failed = sum(1 for outcome, _, _ in ended if outcome in FAILED_OUTCOMES)
        histogram: dict[str, int] = defaultdict(int)
        for ms in runs:
            histogram[bucket_key(ms / 1000, RUN_BUCKETS)] += 1
        wait_histogram: dict[str, int] = defaultdict(int)
        for ms in waits:
            wait_histogram[bucket_key(ms / 1000, WAIT_BUCKETS)] += 1
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
                run_ms_total=sum(runs),
                wait_histogram=dict(wait_histogram),
            )
        )
    return rows


def due_buckets(now: dt.datetime) -> list[dt.datetime]:
    """The buckets a snapshot at ``now`` writes, oldest first: every bucket that ended
    at least SNAPSHOT_LAG before ``now`` since the newest one written, at most
    CATCH_UP_BUCKETS of them; only the newest such bucket while none was ever written."""
    newest = bucket_start(now - SNAPSHOT_LAG) - BUCKET
    last = QueueStat.objects.aggregate(last=Max("bucket"))["last"]
    first = newest if last is None else max(last + BUCKET, newest - (CATCH_UP_BUCKETS - 1) * BUCKET)
    starts = []
    while first <= newest:
        starts.append(first)
        first += BUCKET
    return starts


def snapshot(now: dt.datetime | None = None) -> dict:
    """Write the buckets that are due (due_buckets) for every declared queue, leaving any
    queue row already written alone. Returns the newest bucket, how many buckets were
    due and how many rows this call created."""
    now = now or timezone.now()
    starts = due_buckets(now)
    if not starts:
        return {"bucket": None, "buckets": 0, "created": 0}
    written = set(QueueStat.objects.filter(bucket__in=starts).values_list("queue", "bucket"))
    fresh = [row for row in compute_buckets(starts, now) if (row.queue, row.bucket) not in written]
    # ignore_conflicts: a concurrent snapshot of the same bucket wins, this one adds nothing
    QueueStat.objects.bulk_create(fresh, ignore_conflicts=True)
    created = QueueStat.objects.filter(bucket__in=starts).count() - len(written)
    logger.info(
        "history: buckets %s to %s, %d queue rows written",
        starts[0].isoformat(),
        starts[-1].isoformat(),
        created,
    )
    return {"bucket": starts[-1].isoformat(), "buckets": len(starts), "created": created}


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

"""Retention: delete finished jobs older than their queue's retention, in batches.

Each batch is one short transaction (select ids, delete the jobs with their attempts and
dead letters, and their rows in the results table), so pruning never holds locks on the
ledger for long, and an interrupted prune simply continues next time.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueing.models import Job
from queueing.specs import queue_specs

logger = logging.getLogger(__name__)

# Finished jobs are kept at least this long, whatever their queue declares: the daily
# report (queueing/observe/report.py) reads a business day's attempts from the ledger
# after midnight, and a day is up to 25 h (a DST change), plus an hour for the report to
# run late.
MIN_RETENTION_SECONDS = 26 * 3600
# 1,000 jobs per transaction: a batch of deletes with cascades that takes well under a
# second on PostgreSQL, short enough not to stall the workers' claims.
PRUNE_BATCH_SIZE = 1000


def retention_seconds(queue: str, status: str) -> float:
    """The queue's retention for a final status, never shorter than the broker's
    visibility timeout (a late redelivery must still find its finished row) nor than
    MIN_RETENTION_SECONDS (the daily report reads the day's attempts)."""
    spec = queue_specs().get(queue)
    seconds = (spec.retention if spec else {}).get(status)
    if seconds is None:
        seconds = settings.TASKYARD_DEFAULT_RETENTION[status]
    return max(float(seconds), float(settings.BROKER_VISIBILITY_TIMEOUT), MIN_RETENTION_SECONDS)


def prune(
    *, now: dt.datetime | None = None, batch_size: int = PRUNE_BATCH_SIZE, dry_run: bool = False
) -> dict[str, int]:
    """Delete expired finished jobs; return how many per status (or would, dry run)."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for queue in settings.TASKYARD_QUEUES:
        for status in settings.TASKYARD_DEFAULT_RETENTION:
            cutoff = now - dt.timedelta(seconds=retention_seconds(queue, status))
            expired = Job.objects.filter(queue=queue, status=status, finished_at__lt=cutoff)
            found = expired.count() if dry_run else delete_in_batches(expired, batch_size)
            counts[status] = counts.get(status, 0) + found
    if not dry_run and any(counts.values()):
        logger.info("pruned finished jobs: %s", counts)
    return counts


def delete_in_batches(jobs, batch_size: int = PRUNE_BATCH_SIZE) -> int:
    """Delete the (finished) jobs of a queryset with their attempts, dead letters and
    results, ``batch_size`` per transaction. Returns how many were deleted."""
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(jobs.values_list("id", flat=True)[:batch_size])
            if ids:
                TaskResult.objects.filter(task_id__in=[str(i) for i in ids]).delete()
                Job.objects.filter(id__in=ids).delete()
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


CLEANABLE_STATUSES = ("succeeded", "dead", "cancelled")


def clean_queue(
    queue: str, status: str, older_than_seconds: float, *, dry_run: bool = False
) -> int:
    """An operator's clean-up: delete ``queue``'s jobs in a final ``status`` that finished
    more than ``older_than_seconds`` ago. Returns how many (would be) deleted."""
    if status not in CLEANABLE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(CLEANABLE_STATUSES)}, not {status!r}")
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    jobs = Job.objects.filter(queue=queue, status=status, finished_at__lt=cutoff)
    if dry_run:
        return jobs.count()
    deleted = delete_in_batches(jobs)
    logger.warning(
        "queue %s: cleaned %s %s jobs older than %ss", queue, deleted, status, older_than_seconds
    )
    return deleted

"""Operator controls on single jobs: cancel (durable, cooperative or hard) and progress.

Cancelling a waiting job is one conditional UPDATE: the claim only takes ``queued`` jobs,
so a cancelled job never runs, even if its message is delivered later. A running job is
asked to stop (``cancel_requested_at``; the task checks ``self.is_cancelled()``), and with
``terminate=True`` its pool process is also killed through Celery's revoke.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.utils import timezone

from queueing.broker import control_connection
from queueing.ledger.transitions import cancel_waiting
from queueing.models import Job, JobStatus

logger = logging.getLogger(__name__)

WAITING_STATUSES = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)
# The smallest gap between two progress writes of one job: a task reporting in a tight
# loop must not turn into a database write per iteration.
PROGRESS_MIN_INTERVAL_SECONDS = 1.0


class JobCancelled(Exception):
    """Raise from a task that saw ``self.is_cancelled()``: the job ends ``cancelled``."""


@dataclass(frozen=True)
class CancelResult:
    job_id: str
    status: str  # the job's status after the call
    outcome: str  # "cancelled", "requested" (running: asked to stop) or "already final"


def cancel(job_id, *, terminate: bool = False, reason: str = "cancelled by operator"):
    """Cancel a job. Waiting: cancelled now, for good. Running: asked to stop; with
    ``terminate`` its process is killed too. Final: nothing changes."""
    now = timezone.now()
    cancelled = cancel_waiting(job_id, error_class="taskyard.Cancelled", message=reason)
    if cancelled:
        logger.info("job %s: cancelled (%s)", job_id, reason)
        return CancelResult(str(job_id), JobStatus.CANCELLED, "cancelled")
    requested = Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        cancel_requested_at=now, last_error_message=reason[:2000]
    )
    if requested:
        logger.info("job %s: cancel requested while running (terminate=%s)", job_id, terminate)
        if terminate:
            from config.celery import app

            with control_connection() as connection:
                app.control.revoke(
                    str(job_id), terminate=True, signal="SIGTERM", connection=connection
                )
        return CancelResult(str(job_id), JobStatus.RUNNING, "requested")
    status = Job.objects.filter(id=job_id).values_list("status", flat=True).first()
    if status is None:
        raise Job.DoesNotExist(f"no job {job_id}")
    return CancelResult(str(job_id), status, "already final")


class RetryRefused(ValueError):
    """The job is in a state that cannot be retried (queued, running, succeeded, or a
    dead letter already replayed or discarded)."""


def retry(job_id, *, user=None) -> Job:
    """An operator's retry, the same from the API and the admin. Returns the job that
    will run: waiting (retrying or scheduled) runs now; dead is replayed through its dead
    letter (a new job); cancelled is enqueued again (a new job, ``replay_of`` set).
    Anything else raises RetryRefused."""
    from django.db import transaction

    from queueing.ledger.deadletters import DeadLetterError, enqueue_again, replay
    from queueing.ledger.wake import nudge_relay

    job = Job.objects.select_related("dead_letter").get(id=job_id)
    with transaction.atomic():
        if job.status in (JobStatus.RETRYING, JobStatus.SCHEDULED):
            if Job.objects.filter(id=job.id, status=job.status).update(run_at=timezone.now()):
                transaction.on_commit(nudge_relay)
                logger.info("job %s: retry requested, runs now", job.id)
                return Job.objects.get(id=job.id)
        elif job.status == JobStatus.DEAD and hasattr(job, "dead_letter"):
            try:
                return replay(job.dead_letter.id, user=user)
            except DeadLetterError as exc:
                raise RetryRefused(str(exc)) from None
        elif job.status == JobStatus.CANCELLED:
            return enqueue_again(job, user=user)
    raise RetryRefused(f"job {job.id} is {job.status}: nothing to retry")

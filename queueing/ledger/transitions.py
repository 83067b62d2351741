"""Running a job on a worker: claim under a lease, keep the lease, record the outcome.

The claim is one conditional UPDATE (``queued → running``) that also takes the lease and
the next fencing token; zero rows means the delivery is a duplicate or the job was
cancelled, and the message is dropped. Every later write of the attempt is guarded by the
token, so a worker whose lease was taken over (it stalled, the reaper requeued the job,
another worker claimed it) cannot record anything. See docs/job-ledger.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F
from django.utils import timezone

from queueing import counters as metrics
from queueing import inflight
from queueing.ledger.fused import record_success_fused, result_row
from queueing.ledger.retry import Decision
from queueing.ledger.wake import nudge_relay_if_soon
from queueing.models import (
    AttemptOutcome,
    DeadLetter,
    DeadLetterReason,
    Job,
    JobAttempt,
    JobOrigin,
    JobStatus,
    QueueState,
)

logger = logging.getLogger(__name__)

# Error texts are kept whole in the traceback; the message column holds this much.
ERROR_MESSAGE_MAX_CHARS = 2000
TRACEBACK_MAX_CHARS = 20000


class LeaseLost(Exception):
    """The job's lease was taken over: this attempt must not record anything."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    token: int
    attempt: int
    max_attempts: int
    owner: str
    started_at: dt.datetime
    queue: str = ""
    task_name: str = ""
    wait_seconds: float | None = None  # enqueue (or due time) to this start


def lease_seconds() -> float:
    return float(settings.JOB_LEASE_SECONDS)


def _db_uuid(job_id: str):
    return Job._meta.pk.get_db_prep_value(job_id, connection)


def _db_time(value: dt.datetime):
    return connection.ops.adapt_datetimefield_value(value)


def claim(job_id: str, owner: str) -> Claim | None:
    """Move a queued job to running under a lease owned by ``owner``; None if it is not
    queued (a duplicate delivery, a cancelled job, or no such job) or its queue is
    paused (see :func:`is_held_by_pause`)."""
    now = timezone.now()
    quote = connection.ops.quote_name
    table = quote(Job._meta.db_table)
    # One statement, RETURNING the new token (SQLite >= 3.35 and PostgreSQL both have
    # it), instead of an UPDATE and a SELECT on the hottest path of every job. The
    # pause check rides in it too (the database is the pause's source of truth), instead
    # of a Redis round trip before every claim.
    sql = (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1, "  # noqa: S608 - no user input
        "fencing_token = fencing_token + 1, lease_owner = %s, lease_expires_at = %s, "
        "started_at = %s, finished_at = NULL "
        f"WHERE id = %s AND status = %s AND NOT EXISTS (SELECT 1 FROM "
        f"{quote(QueueState._meta.db_table)} paused WHERE paused.name = {table}.queue "
        "AND paused.paused = %s) "
        "RETURNING attempts, max_attempts, fencing_token, queue, task_name, enqueued_at, run_at"
    )
    params = [
        JobStatus.RUNNING.value,
        owner,
        _db_time(now + dt.timedelta(seconds=lease_seconds())),
        _db_time(now),
        _db_uuid(job_id),
        JobStatus.QUEUED.value,
        True,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    attempt, max_attempts, token, queue, task_name, enqueued_at, run_at = row
    enqueued = _from_db_time(enqueued_at)
    due = max(enqueued, _from_db_time(run_at)) if run_at is not None else enqueued
    # Counted with the attempt's outcome (one Redis round trip per job, after the body).
    wait = (now - due).total_seconds()
    return Claim(
        str(job_id), int(token), int(attempt), int(max_attempts), owner, now, queue, task_name, wait
    )


# What a connection that PostgreSQL dropped (pg_terminate_backend, a restart, a
# PgBouncer that recycled it, a network cut) raises on its next query.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
T = TypeVar("T")


def on_new_connection_if_dropped(
    job_id: str, step: str, write: Callable[[], T], again: Callable[[], T] | None = None
) -> T:
    """Run the ledger write ``write``; if the worker's kept connection was dropped
    (PostgreSQL restarted, killed the backend, PgBouncer recycled it), close it and run
    ``again`` (default: ``write``) once on a new one. Django does not reconnect a
    connection that failed by itself. Inside a transaction the error is the caller's:
    that transaction is lost anyway.

    For the claim: if the first one committed but its answer was lost, the second finds
    the job running and returns None; the delivery is dropped and the lease brings the
    job back."""
    try:
        return write()
    except CONNECTION_ERRORS as error:
        if connection.in_atomic_block:
            raise
        logger.warning(
            "job %s: %s failed on a lost database connection (%r); again on a new one",
            job_id,
            step,
            error,
        )
        connection.close()
        return (again or write)()


def succeeded_under(claim: Claim) -> bool:
    """Did this attempt's success commit (its answer lost with the connection)?"""
    return Job.objects.filter(
        id=claim.job_id, fencing_token=claim.token, status=JobStatus.SUCCEEDED
    ).exists()


def is_held_by_pause(job_id: str) -> bool:
    """After a claim returned None: is the job queued in a paused queue (to be put back
    unpublished), rather than not queued at all (to be dropped)?"""
    paused = QueueState.objects.filter(paused=True).values("name")
    return Job.objects.filter(id=job_id, status=JobStatus.QUEUED, queue__in=paused).exists()


def _from_db_time(value: str | dt.datetime) -> dt.datetime:
    """A timestamp from a raw cursor: aware on PostgreSQL, text or naive UTC on SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def adopt(job_id: str, task, args: list, kwargs: dict, queue: str, owner: str) -> Claim | None:
    """Create the ledger row of a message published without the ledger (``celery call``,
    Flower's API, ``send_task`` from another service), already running under our lease.
    None if a row appeared meanwhile (a concurrent duplicate delivery)."""
    from queueing.ledger.retry import retry_policy_for

    now = timezone.now()
    if queue not in settings.TASKYARD_QUEUES:
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
    max_attempts = retry_policy_for(task, queue).max_attempts
    try:
        with transaction.atomic():
            Job.objects.create(
                id=job_id,
                task_name=task.name,
                queue=queue,
                args=list(args),
                kwargs=dict(kwargs),
                status=JobStatus.RUNNING,
                origin=JobOrigin.ADOPTED,
                attempts=1,
                max_attempts=max_attempts,
                enqueued_at=now,
                published_at=now,
                started_at=now,
                lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds()),
                fencing_token=1,
            )
    except IntegrityError:
        return None
    logger.info("job %s: adopted a %s message published outside the ledger", job_id, task.name)
    return Claim(str(job_id), 1, 1, max_attempts, owner, now, queue, task.name)


def job_exists(job_id: str) -> bool:
    return Job.objects.filter(id=job_id).exists()


def _guarded(claim: Claim):
    return Job.objects.filter(id=claim.job_id, fencing_token=claim.token, status=JobStatus.RUNNING)


def renew_lease(claim: Claim) -> bool:
    """Extend the lease; False when it was taken over."""
    expires = timezone.now() + dt.timedelta(seconds=lease_seconds())
    return _guarded(claim).update(lease_expires_at=expires) == 1


def assert_lease(claim: Claim) -> None:
    """Inside ``transaction.atomic()``: lock the job row and check this attempt still holds
    it, so the task's own writes in that transaction commit only under a valid lease."""
    if not _guarded(claim).select_for_update().exists():
        raise LeaseLost(f"job {claim.job_id}: lease of token {claim.token} was taken over")


def summarise_result(value) -> object:
    try:
        encoded = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return {"repr": repr(value)[:200]}
    if len(encoded) > settings.JOB_RESULT_SUMMARY_MAX_BYTES:
        return {"truncated": True, "bytes": len(encoded)}
    return json.loads(encoded)


def _attempt_row(claim: Claim, outcome: str, now: dt.datetime, **error) -> JobAttempt:
    """The attempt's row (to save in the outcome's transaction); also counted in the
    metrics once that transaction commits."""
    _count_on_commit(claim, outcome, now)
    return _attempt_instance(claim, outcome, now, **error)


def _attempt_instance(claim: Claim, outcome: str, now: dt.datetime, **error) -> JobAttempt:
    return JobAttempt(
        job_id=claim.job_id,
        number=claim.attempt,
        fencing_token=claim.token,
        worker=claim.owner,
        started_at=claim.started_at,
        finished_at=now,
        duration_ms=max(0, int((now - claim.started_at).total_seconds() * 1000)),
        outcome=outcome,
        **error,
    )


def _count_on_commit(claim: Claim, outcome: str, now: dt.datetime) -> None:
    run_seconds = max(0.0, (now - claim.started_at).total_seconds())
    done_with = (inflight.reserved_key(inflight.worker_of(claim.owner)), claim.job_id)
    transaction.on_commit(
        lambda: metrics.observe_attempt(
            claim.queue,
            claim.task_name,
            outcome,
            run_seconds,
            claim.wait_seconds,
            forget=done_with,
        )
    )


def record_success(claim: Claim, value, task=None) -> bool:
    """Mark the job succeeded under this claim's token; False if the lease was lost.
    Call inside the task's transaction to make its writes and the outcome one commit.
    With ``task`` (the running Celery task), Celery's result row is written in the same
    statement (queueing/ledger/fused.py)."""
    now = timezone.now()
    summary = summarise_result(value)
    celery_result = result_row(task, value, summary) if task is not None else None
    attempt = _attempt_instance(claim, AttemptOutcome.SUCCEEDED, now)
    if not record_success_fused(claim.job_id, claim.token, now, summary, attempt, celery_result):
        return False
    _count_on_commit(claim, AttemptOutcome.SUCCEEDED, now)
    return True


def record_cancelled(claim: Claim) -> bool:
    """The task stopped on a cancel request: the job ends ``cancelled``."""
    now = timezone.now()
    with transaction.atomic():
        updated = _guarded(claim).update(
            status=JobStatus.CANCELLED,
            finished_at=now,
            lease_owner="",
            lease_expires_at=None,
            last_error_class="taskyard.Cancelled",
        )
        if updated:
            _attempt_row(claim, AttemptOutcome.CANCELLED, now).save(force_insert=True)
    if updated:
        logger.info(
            "job %s: stopped on its cancel request (attempt %s)", claim.job_id, claim.attempt
        )
    return bool(updated)


# --- transitions of jobs that are not running here ---------------------------------------
# Every status change of a job is one of the functions of this module (the claim and the
# outcomes above, these below), each a conditional UPDATE that names the status it moves
# from, so two processes racing for one job cannot both move it.

WAITING = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)


def cancel_waiting(job_id: uuid.UUID | str, *, error_class: str, message: str) -> bool:
    """scheduled/queued/retrying -> cancelled (an operator's cancel, a unique-key
    replacement). False when the job is not waiting (running, final, gone)."""
    return bool(
        Job.objects.filter(id=job_id, status__in=WAITING).update(
            status=JobStatus.CANCELLED,
            finished_at=timezone.now(),
            published_at=None,
            last_error_class=error_class,
            last_error_message=message[:ERROR_MESSAGE_MAX_CHARS],
        )
    )


def defer_queued(job_id: uuid.UUID | str, run_at: dt.datetime) -> bool:
    """queued -> scheduled until ``run_at``, no attempt spent (a spent rate limit, a held
    concurrency key or provider, before the claim)."""
    return bool(
        Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.SCHEDULED, run_at=run_at, published_at=None
        )
    )


def promote_due(job_ids: list[uuid.UUID], now: dt.datetime) -> int:
    """scheduled/retrying -> queued for the jobs whose run_at has come (the relay)."""
    return Job.objects.filter(
        id__in=job_ids,
        status__in=(JobStatus.SCHEDULED, JobStatus.RETRYING),
        run_at__lte=now,
    ).update(status=JobStatus.QUEUED, published_at=None)


def reap_expired(job: Job, now: dt.datetime, message: str, *, dead: bool) -> bool:
    """running with a lapsed lease -> queued again, or dead when its attempts are spent
    (the relay's reaper). Guarded by the fencing token: a renewed lease wins."""
    guarded = Job.objects.filter(
        id=job.id,
        status=JobStatus.RUNNING,
        fencing_token=job.fencing_token,
        lease_expires_at__lt=now,
    )
    fields: dict[str, object] = {
        "lease_owner": "",
        "lease_expires_at": None,
        "last_error_class": "taskyard.LeaseExpired",
        "last_error_message": message,
    }
    if dead:
        return bool(guarded.update(status=JobStatus.DEAD, finished_at=now, **fields))
    return bool(guarded.update(status=JobStatus.QUEUED, published_at=None, **fields))


def record_deferred(claim: Claim, wait: float, reason: str) -> bool:
    """The body could not call a provider now (breaker open, rate spent, 429): the job
    goes back to ``scheduled`` for ``wait`` seconds and the attempt it claimed is given
    back, so deferrals never exhaust max_attempts. The relay publishes it when due."""
    run_at = timezone.now() + dt.timedelta(seconds=wait)
    updated = _guarded(claim).update(
        status=JobStatus.SCHEDULED,
        run_at=run_at,
        attempts=F("attempts") - 1,
        lease_owner="",
        lease_expires_at=None,
        published_at=None,
        last_error_class="taskyard.ProviderDeferred",
        last_error_message=reason[:ERROR_MESSAGE_MAX_CHARS],
    )
    if updated:
        logger.info("job %s: deferred %.2fs, no attempt spent: %s", claim.job_id, wait, reason)
        nudge_relay_if_soon(run_at)
    else:
        logger.warning("job %s: could not defer (lease taken over): %s", claim.job_id, reason)
    return bool(updated)


def is_cancel_requested(claim: Claim) -> bool:
    return Job.objects.filter(
        id=claim.job_id, fencing_token=claim.token, cancel_requested_at__isnull=False
    ).exists()


def record_progress(claim: Claim, percent: float, message: str) -> bool:
    return _guarded(claim).update(progress=percent, progress_message=message[:255]) == 1


def record_superseded(claim: Claim, exc: BaseException | None = None) -> None:
    """Log an attempt that finished after losing its lease (its outcome was not kept)."""
    logger.warning(
        "job %s: attempt %s (token %s) on %s finished after its lease was taken over; "
        "its outcome is discarded%s",
        claim.job_id,
        claim.attempt,
        claim.token,
        claim.owner,
        f" ({exc!r})" if exc else "",
    )
    now = timezone.now()
    try:
        _attempt_row(claim, AttemptOutcome.SUPERSEDED, now).save(force_insert=True)
    except Exception:
        logger.exception("job %s: could not record the superseded attempt", claim.job_id)


def _error_fields(exc: BaseException) -> dict:
    return {
        "last_error_class": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "last_error_message": str(exc)[:ERROR_MESSAGE_MAX_CHARS],
        "last_error_traceback": "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)
        )[-TRACEBACK_MAX_CHARS:],
    }


# Ids, hashes, addresses and numbers: anything hex-like that contains a digit.
_VOLATILE = re.compile(r"0x[0-9a-f]+|[0-9a-f]*\d[0-9a-f]*|\d+", re.I)


def fingerprint(error_class: str, message: str) -> str:
    """Same cause, same fingerprint: ids, addresses and numbers are blanked out."""
    normalised = _VOLATILE.sub("#", message)[:500]
    return hashlib.sha256(f"{error_class}\n{normalised}".encode()).hexdigest()[:32]


def record_failure(claim: Claim, exc: BaseException, decision: Decision) -> str | None:
    """Record a failed attempt: ``retrying`` with run_at, or ``dead`` with a DeadLetter.
    Returns the new status, or None if the lease was lost meanwhile."""
    now = timezone.now()
    errors = _error_fields(exc)
    attempt_error = {
        "error_class": errors["last_error_class"],
        "error_message": errors["last_error_message"],
        "error_kind": decision.kind.value,
    }
    with transaction.atomic():
        if decision.retry:
            updated = _guarded(claim).update(
                status=JobStatus.RETRYING,
                run_at=now + dt.timedelta(seconds=decision.delay),
                published_at=None,
                lease_owner="",
                lease_expires_at=None,
                **errors,
            )
            outcome, status = AttemptOutcome.RETRYING, JobStatus.RETRYING
        else:
            updated = _guarded(claim).update(
                status=JobStatus.DEAD,
                finished_at=now,
                lease_owner="",
                lease_expires_at=None,
                **errors,
            )
            outcome, status = AttemptOutcome.DEAD, JobStatus.DEAD
            if updated:
                reason = (
                    DeadLetterReason.PERMANENT
                    if decision.kind == "permanent"
                    else DeadLetterReason.EXHAUSTED
                )
                DeadLetter.objects.create(
                    job_id=claim.job_id,
                    reason=reason,
                    error_class=errors["last_error_class"],
                    error_message=errors["last_error_message"],
                    fingerprint=fingerprint(
                        errors["last_error_class"], errors["last_error_message"]
                    ),
                )
        if not updated:
            return None
        _attempt_row(claim, outcome, now, **attempt_error).save(force_insert=True)
        if decision.retry:
            nudge_relay_if_soon(now + dt.timedelta(seconds=decision.delay))
    if status == JobStatus.DEAD:
        logger.error(
            "job %s: dead after attempt %s/%s: %s (%s)",
            claim.job_id,
            claim.attempt,
            claim.max_attempts,
            errors["last_error_class"],
            decision.reason,
        )
    else:
        logger.warning(
            "job %s: attempt %s/%s failed (%s, %s); next try in %.1fs",
            claim.job_id,
            claim.attempt,
            claim.max_attempts,
            errors["last_error_class"],
            decision.reason,
            decision.delay,
        )
    return status


class LeaseKeeper:
    """A thread per worker process that renews the leases of the jobs running in it.

    One thread serves every job of the process (prefork runs one at a time, the threads
    pool several); it renews each lease a third of the way through, so a job survives two
    missed renewals (a slow database) before the reaper could take it.
    """

    _instance: LeaseKeeper | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._claims: dict[str, Claim] = {}
        self._on_renew: dict[str, Callable[[], None]] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskyard-lease", daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> LeaseKeeper:
        # A forked pool process inherits the parent's object but not its thread.
        with cls._instance_lock:
            if cls._instance is None or not cls._instance._thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def watch(self, claim: Claim, on_renew: Callable[[], None] | None = None) -> None:
        """Renew ``claim``'s lease until unwatch(); ``on_renew`` runs after each renewal
        (e.g. to extend a concurrency slot held for the job)."""
        with self._lock:
            self._claims[claim.job_id] = claim
            if on_renew is not None:
                self._on_renew[claim.job_id] = on_renew
            self._lost.discard(claim.job_id)

    def unwatch(self, claim: Claim) -> bool:
        """Stop renewing; True if the lease was seen lost while the job ran."""
        with self._lock:
            self._claims.pop(claim.job_id, None)
            self._on_renew.pop(claim.job_id, None)
            return claim.job_id in self._lost

    def is_lost(self, claim: Claim) -> bool:
        with self._lock:
            return claim.job_id in self._lost

    def _run(self) -> None:
        interval = lease_seconds() / 3
        while True:
            self._wake.wait(interval)
            with self._lock:
                claims = list(self._claims.values())
            if not claims:
                continue
            try:
                close_old_connections()
                for claim in claims:
                    if renew_lease(claim):
                        callback = self._on_renew.get(claim.job_id)
                        if callback is not None:
                            callback()
                        continue
                    logger.warning(
                        "job %s: lease of attempt %s was taken over while running",
                        claim.job_id,
                        claim.attempt,
                    )
                    with self._lock:
                        self._lost.add(claim.job_id)
                        self._claims.pop(claim.job_id, None)
            except Exception:
                # A database blip: the lease still has two renewals' worth of time.
                logger.exception("lease renewal failed; retrying in %.1fs", interval)
            finally:
                connection.close()


def on_task_received(sender=None, request=None, **_) -> None:
    """Celery signal, in the worker's main process: this worker now holds the message."""
    if request is not None and request.id:
        inflight.mark_received(request.id, request.hostname or "unknown")


def on_task_revoked(sender=None, request=None, terminated=False, expired=False, **_) -> None:
    """Celery signal: a revoked or expired message (``revoke()``, ``expires=``) never
    runs, so its job is cancelled instead of waiting for a message that will not come.
    Runs in the worker's main process."""
    job_id = getattr(request, "id", None) or getattr(request, "task_id", None)
    if not job_id:
        return
    statuses = [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING]
    if terminated:
        statuses.append(JobStatus.RUNNING)
    reason = "expired" if expired else ("terminated" if terminated else "revoked")
    try:
        updated = Job.objects.filter(id=job_id, status__in=statuses).update(
            status=JobStatus.CANCELLED,
            finished_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
            last_error_class=f"taskyard.{reason.capitalize()}",
            last_error_message=f"message {reason} in Celery",
        )
    except Exception:
        logger.exception("job %s: could not record that its message was %s", job_id, reason)
        return
    if updated:
        logger.warning("job %s: cancelled, its message was %s", job_id, reason)

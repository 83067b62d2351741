"""The relay and reaper: the loop that makes the broker catch up with the ledger.

Each tick (``manage.py relay``, every RELAY_INTERVAL_SECONDS):

1. reap: a running job whose lease expired (worker killed, host lost) goes back to
   ``queued`` (or ``dead`` once its attempts are spent), its attempt recorded as lost;
2. promote: ``scheduled`` / ``retrying`` jobs whose run_at has come become ``queued``;
3. publish: queued jobs with no publish on record (the after-commit publish failed, or
   2. and 1. just made them queued);
4. recover: every queued job at once when the broker's data was wiped (a Redis restart
   without persistence: the epoch key we leave in Redis is gone); the jobs a dead worker
   had received but not started, as soon as its heartbeat goes stale; and any queued job
   published more than RELAY_REPUBLISH_AFTER_SECONDS ago whose message is neither waiting
   in the broker nor held by a live worker (queueing/inflight.py keeps that index).

The database steps (reap, promote) never wait on Redis: every broker call has a short
socket timeout, and after a failure the broker steps are skipped (retried with a backoff)
while reaping and promoting go on every tick. An outage is logged when it starts, every
minute while it lasts, and when it ends; never once per job.

Why a daemon and not a beat task every second: the relay is what repairs a broker
outage, so it must not depend on the broker to be scheduled; and a tight loop needs no
Celery message per tick. Several copies may run: on PostgreSQL each takes its rows with
``FOR UPDATE SKIP LOCKED``; SQLite has no SKIP LOCKED (Django drops it silently), so
there one relay at a time holds a Redis lock. Every transition is a conditional UPDATE,
so even two relays racing cannot publish a transition twice; a duplicate message is
harmless anyway, the claim absorbs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from queueing import counters as metrics
from queueing.broker import RedisLock
from queueing.control.pause import sync_paused_set
from queueing.ledger.enqueue import PublishSpec, publish
from queueing.ledger.transitions import fingerprint, promote_due, reap_expired
from queueing.ledger.wake import wait_for_nudge
from queueing.models import (
    AttemptOutcome,
    DeadLetter,
    DeadLetterReason,
    Job,
    JobAttempt,
    JobStatus,
)
from queueing.registry import RELAY_KEY, beat
from queueing.relay.recovery import EPOCH_KEY, MessageRecovery
from queueing.relay.state import BROKER_RETRY_SECONDS, BrokerDown, BrokerWatch, TickReport

logger = logging.getLogger(__name__)

__all__ = ["EPOCH_KEY", "LOCK_KEY", "BrokerDown", "Relay", "TickReport"]

LOCK_KEY = "taskyard:relay-lock"
# A reaped attempt, for the metrics: queue, task name, seconds it ran before it was lost.
LostAttempt = tuple[str, str, float]


def _skip_locked() -> bool:
    return connection.features.has_select_for_update_skip_locked


def _locked_batch(queryset, limit: int) -> list:
    """Rows for this relay: locked and skipped by the others on PostgreSQL."""
    if _skip_locked():
        queryset = queryset.select_for_update(skip_locked=True)
    return list(queryset[:limit])


class Relay(BrokerWatch, MessageRecovery):
    def __init__(self, redis_client: redis.Redis | None = None) -> None:
        timeout = settings.RELAY_BROKER_TIMEOUT_SECONDS
        self.redis = redis_client or redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.owner = f"relay-{uuid.uuid4().hex[:8]}"
        self._lock = RedisLock(self.redis, LOCK_KEY, self.owner)
        self.batch = settings.RELAY_BATCH_SIZE
        self._paused: set[str] = set()
        # Broker outage state (monotonic times): when it went, when to try again.
        self.broker_down_since: float | None = None
        self._broker_retry_at = 0.0
        self._broker_backoff = BROKER_RETRY_SECONDS
        self._outage_reported_at = 0.0
        self._missing_since: dict[str, float] = {}
        self._lost_cursor: tuple[dt.datetime | None, uuid.UUID] | None = None
        self._tidy_at = 0.0
        self._tidy_cursor = 0

    # --- the tick --------------------------------------------------------------------

    def tick(self) -> TickReport:
        report = TickReport()
        if not _skip_locked() and not self._hold_lock():
            return report
        now = timezone.now()
        self._reap(now, report)
        self._promote(now, report)
        if not self._broker_usable():
            report.broker_skipped = True
            self._report_outage()
            return report
        try:
            self._paused = sync_paused_set()
            self._check_broker_epoch(report)
            self._release_dead_workers(report)
            self._publish_unpublished(report)
            if not report.broker_wiped:
                self._recover_lost(now, report)
            self._tidy_index()
        except (redis.RedisError, BrokerDown) as exc:
            report.errors.append(f"broker: {exc!r}")
            self._broker_failed(exc)
        else:
            self._broker_back()
        return report

    # --- 1. reap ---------------------------------------------------------------------

    def _reap(self, now: dt.datetime, report: TickReport) -> None:
        # Database only: the metrics of the lost attempts are gathered here and sent in
        # one round trip once every batch has committed (a hung Redis costs a tick one
        # RELAY_BROKER_TIMEOUT_SECONDS at most, not one per reaped job, and no row lock
        # is held while Redis is waited for).
        lost: list[LostAttempt] = []
        while True:
            batch_lost: list[LostAttempt] = []
            with transaction.atomic():
                jobs = _locked_batch(
                    Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now).order_by(
                        "lease_expires_at"
                    ),
                    self.batch,
                )
                for job in jobs:
                    self._reap_one(job, now, report, batch_lost)
            lost.extend(batch_lost)  # committed
            if len(jobs) < self.batch:
                break
        self._count_lost_attempts(lost)

    def _count_lost_attempts(self, lost: list[LostAttempt]) -> None:
        """The reaped attempts' metrics in one pipeline; skipped while the broker is
        marked down (metrics are best effort, the attempt rows are the record)."""
        if not lost:
            return
        if self.broker_down_since is not None:
            logger.debug("relay: broker down, %d lost attempt(s) not counted", len(lost))
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for queue, task, seconds in lost:
                metrics.add_attempt(pipe, queue, task, "lost", seconds)
            pipe.incrby(metrics.LOST_KEY, len(lost))
            pipe.execute()
        except redis.RedisError as exc:
            self._broker_failed(exc)

    def _reap_one(
        self, job: Job, now: dt.datetime, report: TickReport, lost: list[LostAttempt]
    ) -> None:
        message = f"lease of {job.lease_owner or 'unknown worker'} expired"
        spent = job.attempts >= job.max_attempts
        if not reap_expired(job, now, message, dead=spent):
            return
        started = job.started_at or now
        JobAttempt.objects.create(
            job_id=job.id,
            number=job.attempts,
            fencing_token=job.fencing_token,
            worker=job.lease_owner,
            started_at=started,
            finished_at=now,
            duration_ms=max(0, int((now - started).total_seconds() * 1000)),
            outcome=AttemptOutcome.LOST,
            error_class="taskyard.LeaseExpired",
            error_message=message,
            error_kind="lost",
        )
        lost.append((job.queue, job.task_name, max(0.0, (now - started).total_seconds())))
        if spent:
            DeadLetter.objects.create(
                job_id=job.id,
                reason=DeadLetterReason.LOST,
                error_class="taskyard.LeaseExpired",
                error_message=message,
                fingerprint=fingerprint("taskyard.LeaseExpired", "lease expired"),
            )
            report.dead_lost += 1
            logger.error("job %s: dead, lost on %s attempts (%s)", job.id, job.attempts, message)
        else:
            report.reaped += 1
            logger.warning(
                "job %s: attempt %s lost (%s); queued again", job.id, job.attempts, message
            )

    # --- 2. promote ------------------------------------------------------------------

    def _promote(self, now: dt.datetime, report: TickReport) -> None:
        while True:
            with transaction.atomic():
                ids = [
                    job.id
                    for job in _locked_batch(
                        Job.objects.filter(
                            status__in=(JobStatus.SCHEDULED, JobStatus.RETRYING),
                            run_at__lte=now,
                        )
                        .order_by("run_at")
                        .only("id"),
                        self.batch,
                    )
                ]
                promoted = promote_due(ids, now)
            report.promoted += promoted
            if len(ids) < self.batch:
                return

    # --- 3. publish ------------------------------------------------------------------

    def _publish_unpublished(self, report: TickReport) -> None:
        self._publish_where(
            Job.objects.filter(status=JobStatus.QUEUED, published_at=None).exclude(
                queue__in=self._paused
            ),
            report,
        )

    def _publish_where(self, queryset, report: TickReport, *, lost: bool = False) -> None:
        """Publish each job of ``queryset`` (batch by batch) and stamp published_at.

        The stamp is a conditional UPDATE made before the publish, committed right away,
        so a second relay skips the row; if a publish fails, the stamps of that job and of
        every job of the batch not sent yet are taken back (issue 19: a stamp must mean a
        message)."""
        while True:
            now = timezone.now()
            with transaction.atomic():
                jobs = _locked_batch(
                    queryset.order_by("priority", "enqueued_at").only(
                        "id",
                        "task_name",
                        "queue",
                        "args",
                        "kwargs",
                        "options",
                        "priority",
                        "published_at",
                    ),
                    self.batch,
                )
                stamped = []
                for job in jobs:
                    claimed = Job.objects.filter(
                        id=job.id, status=JobStatus.QUEUED, published_at=job.published_at
                    ).update(published_at=now)
                    if claimed:
                        stamped.append(job)
            republished = []
            for sent, job in enumerate(stamped):
                try:
                    publish(PublishSpec.of(job), breaker=False)
                except Exception as exc:
                    # Take back the stamp of this job and of every job of the batch not
                    # sent yet (only our own stamp: another relay may have restamped), so
                    # no job stays marked published without a message.
                    unsent = [other.id for other in stamped[sent:]]
                    report.publish_failures += 1
                    Job.objects.filter(
                        id__in=unsent, status=JobStatus.QUEUED, published_at=now
                    ).update(published_at=None)
                    logger.info(
                        "relay: publish failed, %d job(s) left unpublished for a later "
                        "tick, first %s: %r",
                        len(unsent),
                        job.id,
                        exc,
                    )
                    raise BrokerDown(repr(exc)) from exc
                if lost:
                    republished.append(str(job.id))
                else:
                    report.published += 1
            if republished:
                report.republished_lost += len(republished)
                metrics.count_lost(len(republished))
                logger.warning(
                    "relay: published %d job(s) again whose message was lost (first %s)",
                    len(republished),
                    ", ".join(republished[:5]),
                )
            if len(jobs) < self.batch:
                return

    # --- running ---------------------------------------------------------------------

    def _hold_lock(self) -> bool:
        """SQLite: one relay at a time (a lock that expires if its holder dies)."""
        if self.broker_down_since is not None:
            return True  # as below: no lock without a broker, and no publishing either
        try:
            return self._lock.hold(max(5.0, settings.RELAY_INTERVAL_SECONDS * 5))
        except redis.RedisError as exc:
            # No broker, no lock: publishing is impossible anyway, but reaping and
            # promoting are still safe (conditional UPDATEs), so go on, with the broker
            # marked down so that nothing else of the tick waits on it.
            self._broker_failed(exc)
            return True

    def tick_due(self) -> TickReport:
        """The between-ticks step: promote the jobs that came due and publish them, so a
        scheduled job is not held back until the next full tick. While the broker is
        marked down it only promotes: the full tick's backoff decides when to try the
        broker again, and publishes what waits then."""
        report = TickReport()
        if not _skip_locked() and not self._hold_lock():
            return report
        self._promote(timezone.now(), report)
        if not report.promoted or self.broker_down_since is not None:
            return report
        try:
            self._publish_unpublished(report)
        except (redis.RedisError, BrokerDown) as exc:
            report.errors.append(f"broker: {exc!r}")
            self._broker_failed(exc)  # logged once per outage
        return report

    def seconds_to_next_due(self) -> float | None:
        """Seconds until the earliest scheduled or retrying job is due (None: none)."""
        run_at = (
            Job.objects.filter(status__in=(JobStatus.SCHEDULED, JobStatus.RETRYING))
            .order_by("run_at")
            .values_list("run_at", flat=True)
            .first()
        )
        if run_at is None:
            return None
        return (run_at - timezone.now()).total_seconds()

    def run_forever(self, *, stop_after: float | None = None) -> None:
        """Full ticks every RELAY_INTERVAL_SECONDS; in between, wake when the next
        scheduled job is due (at most every RELAY_DUE_GRANULARITY_SECONDS), so a job runs
        on time instead of up to a whole interval late."""
        started = time.monotonic()
        interval = settings.RELAY_INTERVAL_SECONDS
        granularity = min(settings.RELAY_DUE_GRANULARITY_SECONDS, interval)
        logger.info(
            "relay %s started (tick %.2fs, due jobs within %.2fs)",
            self.owner,
            interval,
            granularity,
        )
        next_full = time.monotonic()
        while stop_after is None or time.monotonic() - started < stop_after:
            full = time.monotonic() >= next_full
            if full:
                next_full = time.monotonic() + interval
            try:
                report = self.tick() if full else self.tick_due()
                if full and self.broker_down_since is None:
                    beat(RELAY_KEY)  # skipped while down: each would wait the timeout
                if report.busy:
                    logger.info("relay tick: %s", report)
                wake = next_full
                due_in = self.seconds_to_next_due()
                if due_in is not None:
                    wake = min(wake, time.monotonic() + max(due_in, granularity))
            except Exception:
                logger.exception("relay tick failed; next tick in %.2fs", interval)
                connection.close()
                report, wake = TickReport(), time.monotonic() + interval
                next_full = wake
            # A full batch means more is waiting: go again at once.
            if report.published >= self.batch or report.promoted >= self.batch:
                continue
            # Sleep until then, unless someone schedules a job due sooner (queueing.ledger.wake).
            if self.broker_down_since is None:
                wait_for_nudge(self.redis, wake - time.monotonic())
            else:
                time.sleep(max(0.0, wake - time.monotonic()))

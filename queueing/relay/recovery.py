"""Step 4 of the relay's tick: finding messages the broker or a worker lost.

See queueing/inflight.py for the index of where each message is, and docs/job-ledger.md
for the repair times."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from queueing import counters as metrics
from queueing import inflight
from queueing.broker import as_text
from queueing.models import Job, JobStatus
from queueing.registry import STALE_AFTER_SECONDS, live_worker_entries
from queueing.relay.state import TickReport

logger = logging.getLogger("queueing.relay.loop")

# Redis key whose absence tells the relay the broker lost its data.
EPOCH_KEY = "taskyard:broker-epoch"
# A worker missing from the heartbeat registry this long (on top of the registry's own
# staleness) is dead: the jobs it had received go back to the broker.
DEAD_WORKER_CONFIRM_SECONDS = 1.0
# How often the index of messages (queueing/inflight.py) is swept of finished jobs.
TIDY_SECONDS = 30.0
TIDY_BATCH = 1000


class MessageRecovery:
    """The relay's recovery steps; Relay supplies the client, the batch size, the paused
    queues and the publishing."""

    redis: redis.Redis
    batch: int
    _paused: set[str]
    broker_down_since: float | None
    broker_back_at: float
    _missing_since: dict[str, float]
    # (published_at, id) of the last job checked; published_at is never None there.
    _lost_cursor: tuple[dt.datetime | None, uuid.UUID] | None
    _tidy_at: float
    _tidy_cursor: int

    def _publish_where(self, queryset, report: TickReport, *, lost: bool = False) -> None:
        raise NotImplementedError

    def _check_broker_epoch(self, report: TickReport) -> None:
        """If Redis lost its data (restarted without persistence, flushed), every queued
        job's message is gone: mark them all unpublished so step 3 publishes them."""
        created = self.redis.set(EPOCH_KEY, str(timezone.now().timestamp()), nx=True)
        if not created:
            return
        # The key is missing: a fresh Redis (first start, or restarted without its data)
        # or a flushed one. Either way no queued job's message can be in it.
        report.broker_wiped = True
        count = Job.objects.filter(status=JobStatus.QUEUED).update(published_at=None)
        metrics.count_lost(count)
        if count:
            logger.warning(
                "the broker has lost its data (epoch key gone): republishing %s queued jobs",
                count,
            )

    def _release_dead_workers(self, report: TickReport) -> None:
        """A worker that is gone (no heartbeat) took the messages it had received with it:
        their jobs, still queued, are published again now, not after kombu's visibility
        timeout. The jobs it was running come back when their leases expire (reap)."""
        if (
            self.broker_down_since is not None
            or time.monotonic() - self.broker_back_at < STALE_AFTER_SECONDS
        ):
            # Back from an outage (this tick, or less than a stale window ago): the
            # heartbeats of the outage were never written, so a live worker looks dead
            # until it has had a whole stale window to beat again.
            return
        workers = inflight.workers_with_reservations(self.redis)
        if not workers:
            return
        live = set(live_worker_entries())
        now = time.monotonic()
        for worker in workers:
            if worker in live:
                self._missing_since.pop(worker, None)
                continue
            if now - self._missing_since.setdefault(worker, now) < DEAD_WORKER_CONFIRM_SECONDS:
                continue
            ids = inflight.reservations(worker, self.redis)
            released = 0
            for start in range(0, len(ids), self.batch):
                released += (
                    Job.objects.filter(
                        id__in=ids[start : start + self.batch], status=JobStatus.QUEUED
                    )
                    .exclude(published_at=None)
                    .update(published_at=None)
                )
            inflight.drop_worker(worker, self.redis)
            self._missing_since.pop(worker, None)
            report.released_from_dead_workers += released
            logger.warning(
                "relay: worker %s is gone (no heartbeat); %d queued job(s) it had received "
                "are published again",
                worker,
                released,
            )

    def _recover_lost(self, now: dt.datetime, report: TickReport) -> None:
        """Queued jobs published a while ago whose message is nowhere (neither waiting in
        the broker nor held by a live worker) are published again. A batch per tick,
        oldest first, going round the backlog so jobs that legitimately wait long do not
        keep the others from being checked."""
        cutoff = now - dt.timedelta(seconds=settings.RELAY_REPUBLISH_AFTER_SECONDS)
        candidates = Job.objects.filter(status=JobStatus.QUEUED, published_at__lt=cutoff).exclude(
            queue__in=self._paused
        )
        if self._lost_cursor is not None:
            # (published_at, id), not published_at alone: a bulk enqueue stamps up to
            # MAX_BULK_JOBS rows and a relay batch RELAY_BATCH_SIZE rows with one time,
            # and "published_at > cursor" would skip all of them past the first batch.
            after, after_id = self._lost_cursor
            candidates = candidates.filter(
                Q(published_at__gt=after) | Q(published_at=after, id__gt=after_id)
            )
        rows = list(
            candidates.order_by("published_at", "id").values_list("published_at", "id")[
                : self.batch
            ]
        )
        self._lost_cursor = rows[-1] if len(rows) == self.batch else None
        if not rows:
            return
        ids = [str(job_id) for _, job_id in rows]
        # Any worker's reservations count, a dead one's too: _release_dead_workers hands
        # those back (once) when the worker's heartbeat is confirmed gone.
        known = inflight.where(
            ids,
            inflight.workers_with_reservations(self.redis),
            self.redis,
            held_for=2 * settings.RELAY_REPUBLISH_AFTER_SECONDS,
        )
        taken = inflight.taken_without_receipt(
            known, self.redis, older_than=settings.RELAY_REPUBLISH_AFTER_SECONDS
        )
        lost = [job_id for job_id in ids if job_id not in known or job_id in taken]
        if lost:
            self._publish_where(
                Job.objects.filter(id__in=lost, status=JobStatus.QUEUED, published_at__lt=cutoff),
                report,
                lost=True,
            )
        if taken:
            logger.warning(
                "relay: %d message(s) taken off the broker by a consumer that died before "
                "recording them, published again: jobs %s",
                len(taken),
                ", ".join(sorted(taken)[:20]),
            )
            inflight.forget_deliveries(taken.values(), self.redis)

    def _tidy_index(self) -> None:
        """Every TIDY_SECONDS: drop index entries of jobs that are no longer queued (a
        duplicate delivery, a cancelled or paused job's message), a batch at a time."""
        if time.monotonic() < self._tidy_at:
            return
        self._tidy_at = time.monotonic() + TIDY_SECONDS
        self._tidy_cursor, members = self.redis.sscan(
            inflight.SENT_KEY, self._tidy_cursor, count=TIDY_BATCH
        )
        inflight.forget_sent(self._not_queued([as_text(m) for m in members]), self.redis)
        for worker in live_worker_entries():
            ids = inflight.reservations(worker, self.redis)
            inflight.drop(worker, self._not_queued(ids), self.redis)

    def _not_queued(self, ids: list[str]) -> list[str]:
        queued: set[str] = set()
        for start in range(0, len(ids), self.batch):
            chunk = ids[start : start + self.batch]
            queued.update(
                str(job_id)
                for job_id in Job.objects.filter(id__in=chunk, status=JobStatus.QUEUED).values_list(
                    "id", flat=True
                )
            )
        return [job_id for job_id in ids if job_id not in queued]

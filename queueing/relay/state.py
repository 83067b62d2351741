"""The relay's state of the broker and its tick report (queueing/relay/loop.py)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from queueing.models import Job, JobStatus

logger = logging.getLogger("queueing.relay.loop")

# The broker steps retry a failed broker after this, doubling up to the maximum.
BROKER_RETRY_SECONDS = 0.5
BROKER_RETRY_MAX_SECONDS = 5.0
OUTAGE_SUMMARY_SECONDS = 60.0


class BrokerDown(Exception):
    """A broker call of this tick failed: skip the other broker steps."""


@dataclass
class TickReport:
    reaped: int = 0
    dead_lost: int = 0
    promoted: int = 0
    published: int = 0
    republished_lost: int = 0
    released_from_dead_workers: int = 0
    publish_failures: int = 0
    broker_wiped: bool = False
    broker_skipped: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(
            self.reaped
            or self.promoted
            or self.published
            or self.republished_lost
            or self.released_from_dead_workers
        )


class BrokerWatch:
    """Whether the broker answers, as the relay sees it: after a failed call the broker
    steps are skipped and retried with a backoff, and the outage is logged when it
    starts, every OUTAGE_SUMMARY_SECONDS while it lasts, and when it ends."""

    redis: redis.Redis
    broker_down_since: float | None = None
    # When the broker last answered again after an outage (monotonic; never: -inf).
    broker_back_at = float("-inf")
    _broker_retry_at = 0.0
    _broker_backoff = BROKER_RETRY_SECONDS
    _outage_reported_at = 0.0

    def _broker_usable(self) -> bool:
        if self.broker_down_since is None:
            return True
        if time.monotonic() < self._broker_retry_at:
            return False
        try:
            self.redis.ping()
        except redis.RedisError:
            self._broker_backoff = min(self._broker_backoff * 2, BROKER_RETRY_MAX_SECONDS)
            self._broker_retry_at = time.monotonic() + self._broker_backoff
            return False
        return True

    def _broker_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._broker_retry_at = now + self._broker_backoff
        if self.broker_down_since is not None:
            return
        self.broker_down_since = self._outage_reported_at = now
        logger.warning(
            "relay: the broker does not answer (%r); reaping and promoting go on, publishing "
            "waits for it (retried every %.1f-%.0f s, summary every %.0f s)",
            exc,
            BROKER_RETRY_SECONDS,
            BROKER_RETRY_MAX_SECONDS,
            OUTAGE_SUMMARY_SECONDS,
        )

    def _report_outage(self) -> None:
        now = time.monotonic()
        if (
            self.broker_down_since is None
            or now - self._outage_reported_at < OUTAGE_SUMMARY_SECONDS
        ):
            return
        self._outage_reported_at = now
        waiting = Job.objects.filter(status=JobStatus.QUEUED, published_at=None).count()
        logger.warning(
            "relay: broker down for %.0f s; %d queued job(s) wait to be published",
            now - self.broker_down_since,
            waiting,
        )

    def _broker_back(self) -> None:
        self._broker_backoff = BROKER_RETRY_SECONDS
        if self.broker_down_since is None:
            return
        logger.warning(
            "relay: the broker answers again after %.1f s",
            time.monotonic() - self.broker_down_since,
        )
        self.broker_down_since = None
        self.broker_back_at = time.monotonic()

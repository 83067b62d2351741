"""Global rate limits, shared by every worker on every host, in Redis.

Celery's own ``rate_limit`` is per worker process; these hold across the cluster. A limit
is "N/s", "N/m" or "N/h": at most N job starts in ANY window of that length (a sliding
log in one Lua script, so bursts up to N are allowed and the bound is exact). Limits are
named in settings.TASKYARD_RATE_LIMITS (e.g. ``"sendgrid": "100/m"``), per queue with the
declaration's ``rate_limit``, and a task picks a named one with ``rate_limit_key``.

A job that finds its limit spent is not run and spends no attempt: it goes back to the
ledger as ``scheduled`` with ``run_at`` = when a slot frees, and the relay publishes it
then; the worker moves on to other work meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

import redis
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")

# KEYS[1] the log; ARGV: limit, window in ms, a unique member. Redis's own clock, so
# workers on hosts with skewed clocks share one time line. Returns 0 when the start is
# allowed (and recorded), otherwise the milliseconds until a slot frees.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


@dataclass(frozen=True)
class Rate:
    limit: int
    period: float  # seconds

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period]
        return f"{self.limit}/{unit}"


def parse_rate(value: object, where: str) -> Rate:
    """'100/m' → Rate(100, 60). Anything else: ImproperlyConfigured naming ``where``."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{where}: rate {value!r} is not like '100/m' (a positive count per s, m or h)"
        )
    return Rate(int(match.group(1)), _PERIODS[match.group(2)])


def parse_rate_limits(raw: dict) -> dict[str, Rate]:
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("TASKYARD_RATE_LIMITS must be a dict of name: 'N/period'")
    return {
        name: parse_rate(value, f"TASKYARD_RATE_LIMITS[{name!r}]") for name, value in raw.items()
    }


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_SLIDING_LOG)

    def acquire(self, name: str, rate: Rate) -> float:
        """Record a start under ``name`` if the rate allows; else seconds to wait."""
        wait_ms = self._script(
            keys=[f"taskyard:rate:{name}"],
            args=[rate.limit, int(rate.period * 1000), uuid.uuid4().hex],
        )
        return int(wait_ms) / 1000.0


def limits_for(task, queue: str) -> list[tuple[str, Rate]]:
    """The named limits a job of ``task`` on ``queue`` must pass."""
    from django.conf import settings

    found = []
    spec = settings.TASKYARD_QUEUE_SPECS.get(queue)
    if spec is not None and spec.rate_limit is not None:
        found.append((f"queue:{queue}", spec.rate_limit))
    key = getattr(task, "rate_limit_key", None)
    if key:
        try:
            found.append((key, settings.TASKYARD_RATE_LIMIT_SPECS[key]))
        except KeyError:
            raise ImproperlyConfigured(
                f"task {task.name} names rate limit {key!r}, which TASKYARD_RATE_LIMITS lacks"
            ) from None
    return found


def defer(job_id: str, wait: float, reason: str) -> bool:
    """Send a queued job back to the ledger until ``wait`` seconds from now, no attempt
    spent; the relay publishes it when it is due."""
    from queueing.models import Job, JobStatus

    run_at = timezone.now() + dt.timedelta(seconds=wait)
    updated = Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.SCHEDULED, run_at=run_at, published_at=None
    )
    if updated:
        logger.info("job %s: %s; runs again in %.2fs", job_id, reason, wait)
    return bool(updated)

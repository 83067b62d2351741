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
import uuid

import redis
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from queueing.broker import as_text
from queueing.ledger.keys import concurrency_key_for  # noqa: F401 - re-exported for callers
from queueing.ledger.wake import nudge_relay_if_soon
from queueing.specs import Rate, queue_specs, rate_limit_specs

logger = logging.getLogger(__name__)


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


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_SLIDING_LOG)

    def acquire(self, name: str, rate: Rate, member: str | None = None) -> float:
        """Record a start under ``name`` if the rate allows; else seconds to wait.
        ``member`` names the recorded start, so it can be given back with refund()."""
        wait_ms = self._script(
            keys=[f"taskyard:rate:{name}"],
            args=[rate.limit, int(rate.period * 1000), member or uuid.uuid4().hex],
        )
        return int(wait_ms) / 1000.0

    def refund(self, name: str, member: str) -> None:
        """Forget a recorded start (the request it counted was refused after all)."""
        self.client.zrem(f"taskyard:rate:{name}", member)


def limits_for(task, queue: str) -> list[tuple[str, Rate]]:
    """The named limits a job of ``task`` on ``queue`` must pass."""

    found = []
    spec = queue_specs().get(queue)
    if spec is not None and spec.rate_limit is not None:
        found.append((f"queue:{queue}", spec.rate_limit))
    key = getattr(task, "rate_limit_key", None)
    if key:
        try:
            found.append((key, rate_limit_specs()[key]))
        except KeyError:
            raise ImproperlyConfigured(
                f"task {task.name} names rate limit {key!r}, which TASKYARD_RATE_LIMITS lacks"
            ) from None
    return found


def defer(job_id: str, wait: float, reason: str) -> bool:
    """Send a queued job back to the ledger until ``wait`` seconds from now, no attempt
    spent; the relay publishes it when it is due."""
    from queueing.ledger.transitions import defer_queued

    run_at = timezone.now() + dt.timedelta(seconds=wait)
    updated = defer_queued(job_id, run_at)
    if updated:
        logger.info("job %s: %s; runs again in %.2fs", job_id, reason, wait)
        nudge_relay_if_soon(run_at)
    return bool(updated)


# --- Concurrency limits ----------------------------------------------------------------
# KEYS[1] the holders (job id → lease expiry, ms); ARGV: limit, lease ms, job id. Holders
# whose lease lapsed (their worker died) are dropped first, so a limit is never held by
# a dead worker for longer than a lease. Returns 0 when held (or already held by this
# job), else the ms until the earliest holder's lease lapses.
_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
"""
_RENEW_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
end
return 1
"""
# A job that finds its concurrency key full waits at least this long before it is
# published again (the holder will usually finish before its lease lapses).
CONCURRENCY_RETRY_SECONDS = 1.0


class ConcurrencyLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._acquire = client.register_script(_ACQUIRE_SLOT)
        self._renew = client.register_script(_RENEW_SLOT)

    @staticmethod
    def _key(key: str) -> str:
        return f"taskyard:concurrency:{key}"

    def acquire(self, key: str, limit: int, job_id: str, lease_seconds: float) -> float:
        """Hold one of ``limit`` slots of ``key`` for ``job_id``; else seconds to wait."""
        wait_ms = self._acquire(
            keys=[self._key(key)], args=[limit, int(lease_seconds * 1000), job_id]
        )
        return int(wait_ms) / 1000.0

    def renew(self, key: str, job_id: str, lease_seconds: float) -> None:
        self._renew(keys=[self._key(key)], args=[int(lease_seconds * 1000), job_id])

    def release(self, key: str, job_id: str) -> None:
        self.client.zrem(self._key(key), job_id)

    def holders(self, key: str) -> list[str]:
        members = self.client.zrange(self._key(key), 0, -1)
        # Without withscores, ZRANGE replies with the members only.
        return [as_text(m) for m in members if isinstance(m, bytes | str)]

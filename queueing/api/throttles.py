"""API throttles shared by every web process: a sliding log per user and scope in Redis
(the same Lua script as the job rate limits, queueing/control/limits.py), so N requests per period
hold across processes and hosts. Rates: settings.API_THROTTLE_RATES."""

from __future__ import annotations

import logging
import time

import redis
from rest_framework.throttling import BaseThrottle

from queueing.broker import shared_redis
from queueing.control.limits import RateLimiter
from queueing.specs import throttle_specs

logger = logging.getLogger(__name__)

_limiter: RateLimiter | None = None
# After a Redis error, throttles are skipped in this process for this long, so a hung
# Redis costs one request one timeout, not every request one timeout per throttle.
REDIS_DOWN_SKIP_SECONDS = 5.0
_redis_down_until = 0.0


def _redis_limiter() -> RateLimiter:
    global _limiter  # noqa: PLW0603
    if _limiter is None:
        _limiter = RateLimiter(shared_redis())
    return _limiter


class RedisThrottle(BaseThrottle):
    scope = "general"

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        user = request.user
        who = (
            f"user:{user.pk}" if user and user.is_authenticated else f"ip:{self.get_ident(request)}"
        )
        return self._acquire(who)

    def _acquire(self, who: str) -> bool:
        global _redis_down_until  # noqa: PLW0603 - per process, like the publisher's breaker
        if time.monotonic() < _redis_down_until:
            return True
        try:
            wait = _redis_limiter().acquire(f"api:{self.scope}:{who}", throttle_specs()[self.scope])
        except redis.RedisError as exc:
            _redis_down_until = time.monotonic() + REDIS_DOWN_SKIP_SECONDS
            # Throttling is protection, not a gate: without Redis the API stays usable
            # (enqueue works without the broker too) and says so in the log.
            logger.warning("API throttle %s skipped, Redis unavailable: %r", self.scope, exc)
            return True
        self._wait = wait
        return wait == 0

    def wait(self) -> float:
        return self._wait


class GeneralThrottle(RedisThrottle):
    """Every authenticated request (100 / 15 min per user by default)."""

    scope = "general"


class JobCreateThrottle(RedisThrottle):
    """Requests that create jobs (20 / min per user)."""

    scope = "job_create"


class AdminOpsThrottle(RedisThrottle):
    """Queue operations: pause, resume, clean, recurring jobs, replays (50 / 5 min)."""

    scope = "admin_ops"


class LoginAddressThrottle(RedisThrottle):
    """Login attempts per client address (TRUSTED_PROXY_COUNT decides what that is)."""

    scope = "login_address"

    def allow_request(self, request, view) -> bool:
        return self._acquire(f"ip:{self.get_ident(request)}")


class LoginAccountThrottle(RedisThrottle):
    """Login attempts per account, whatever address they come from."""

    scope = "login_account"

    def allow_request(self, request, view) -> bool:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return True  # the serializer answers 400; nothing to count against
        return self._acquire(f"account:{username.strip().lower()[:150]}")

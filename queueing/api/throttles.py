"""API throttles shared by every web process: a sliding log per user and scope in Redis
(the same Lua script as the job rate limits, queueing/control/limits.py), so N requests per period
hold across processes and hosts. Rates: settings.API_THROTTLE_RATES."""

from __future__ import annotations

import logging
import time
import uuid

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
        self._recorded: tuple[str, str] | None = None  # (log name, member) to refund

    def who(self, request) -> str:
        user = request.user
        if user and user.is_authenticated:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        return self._acquire(self.who(request))

    def refund(self) -> None:
        """Give back this request's start (it was refused: a 4xx is no creation)."""
        if self._recorded is None:
            return
        try:
            _redis_limiter().refund(*self._recorded)
        except redis.RedisError as exc:
            logger.warning("API throttle %s: refund skipped: %r", self.scope, exc)

    def _acquire(self, who: str, scope: str | None = None) -> bool:
        global _redis_down_until  # noqa: PLW0603 - per process, like the publisher's breaker
        scope = scope or self.scope
        if time.monotonic() < _redis_down_until:
            return True
        name, member = f"api:{scope}:{who}", uuid.uuid4().hex
        try:
            wait = _redis_limiter().acquire(name, throttle_specs()[scope], member)
        except redis.RedisError as exc:
            _redis_down_until = time.monotonic() + REDIS_DOWN_SKIP_SECONDS
            # Throttling is protection, not a gate: without Redis the API stays usable
            # (enqueue works without the broker too) and says so in the log.
            logger.warning("API throttle %s skipped, Redis unavailable: %r", self.scope, exc)
            return True
        self._wait = wait
        if wait == 0:
            self._recorded = (name, member)
        return wait == 0

    def wait(self) -> float:
        return self._wait


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class GeneralThrottle(RedisThrottle):
    """Every request, on one of two budgets per user: reads (1,000 / 15 min by default)
    and writes (100 / 15 min). Admins (operate_queues) are limited only by the
    admin-operation limit: an operator steering an incident must not lock themself out."""

    scope = "write"

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user and user.is_authenticated and user.has_perm("queueing.operate_queues"):
            return True
        scope = "read" if request.method in SAFE_METHODS else "write"
        return self._acquire(self.who(request), scope)


class JobCreateThrottle(RedisThrottle):
    """Requests that create jobs (20 / min per user). Views refund a refused request
    (RefundRefusedCreations), so only jobs really created count."""

    scope = "job_create"


class RefundRefusedCreations:
    """A view mixin: a creation answered 4xx gives its job_create start back."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if 400 <= response.status_code < 500 and response.status_code != 429:
            for throttle in getattr(self, "_taskyard_throttles", ()):
                if isinstance(throttle, JobCreateThrottle):
                    throttle.refund()
        return response

    def check_throttles(self, request) -> None:
        """DRF's check, keeping the throttle objects for finalize_response."""
        self._taskyard_throttles = self.get_throttles()  # type: ignore[attr-defined]
        durations = [
            throttle.wait()
            for throttle in self._taskyard_throttles
            if not throttle.allow_request(request, self)
        ]
        if durations:
            known = [duration for duration in durations if duration is not None]
            self.throttled(request, max(known, default=None))  # type: ignore[attr-defined]


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

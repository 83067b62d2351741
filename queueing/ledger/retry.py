"""Retry policy: which failures heal with time, and how long to wait.

Plain functions, no Celery and no database (retry_policy_for reads settings), so the
table in docs/job-ledger.md is tested directly (tests/queueing/test_retry_policy.py). The
worker calls :func:`decide` after a failed attempt; a retry waits in the ledger (status
``retrying`` + ``run_at``), never as a Celery ETA in worker memory.

    transient     connection errors, timeouts, HTTP 5xx/408, DB operational errors,
                  and anything unrecognised (a deploy can heal a bug)
                  → exponential backoff with full jitter, up to max_attempts
    rate_limited  HTTP 429, RateLimited(retry_after) → wait what the remote said
    auth          HTTP 401/403 → one retry (a token may have been refreshed meanwhile)
    permanent     PermanentError, validation errors, other HTTP 4xx → no retry
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError


class PermanentError(Exception):
    """Raise from a task when retrying cannot help (bad input, a refused request)."""


class TransientError(Exception):
    """Raise from a task to ask for a retry with backoff."""


class RateLimited(Exception):
    """Raise when a remote said "slow down"; the job waits ``retry_after`` seconds."""

    def __init__(self, retry_after: float | None = None, message: str = "rate limited"):
        super().__init__(message)
        self.retry_after = retry_after


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class RetryPolicy:
    """Per queue (settings.TASKYARD_QUEUES[...]["retry"]), overridable per task."""

    max_attempts: int = 5
    base_delay: float = 2.0  # seconds; the cap of the first backoff
    max_delay: float = 3600.0  # seconds; no backoff waits longer than an hour
    auth_retries: int = 1
    # A remote that asks for more than this is not waited on: the job dies instead.
    max_rate_limit_wait: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")


@dataclass(frozen=True)
class Classification:
    kind: FailureKind
    retry_after: float | None = None  # what the remote asked for, if it said


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float  # seconds until the next attempt; 0 when not retrying
    kind: FailureKind
    reason: str


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    OperationalError,
    InterfaceError,
    SoftTimeLimitExceeded,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (PermanentError, ValidationError)


def _optional_types() -> tuple[type[BaseException], ...]:
    """Connection errors of client libraries we use, when installed."""
    found: list[type[BaseException]] = []
    try:
        import redis.exceptions

        found += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        import kombu.exceptions

        found.append(kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


_TRANSIENT_TYPES += _optional_types()


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: ``exc.response.status_code`` (requests,
    httpx), ``exc.status_code`` or ``exc.status`` (stripe, twilio, sendgrid, aiohttp)."""
    response = getattr(exc, "response", None)
    for holder, attribute in (
        (response, "status_code"),
        (exc, "status_code"),
        (exc, "http_status"),
        (exc, "status"),
    ):
        value = getattr(holder, attribute, None) if holder is not None else None
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _retry_after_header(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to our own backoff


def classify(exc: BaseException) -> Classification:
    if isinstance(exc, RateLimited):
        return Classification(FailureKind.RATE_LIMITED, exc.retry_after)
    if isinstance(exc, _PERMANENT_TYPES):
        return Classification(FailureKind.PERMANENT)
    status = http_status(exc)
    if status is not None:
        if status == 429:
            return Classification(FailureKind.RATE_LIMITED, _retry_after_header(exc))
        if status in (401, 403):
            return Classification(FailureKind.AUTH)
        if status == 408 or status >= 500:
            return Classification(FailureKind.TRANSIENT)
        if 400 <= status < 500:
            return Classification(FailureKind.PERMANENT)
    if isinstance(exc, _TRANSIENT_TYPES):
        return Classification(FailureKind.TRANSIENT)
    # Unrecognised: most likely a bug. Retrying with backoff gives a fix time to deploy;
    # max_attempts still bounds it and the dead letter keeps the traceback.
    return Classification(FailureKind.TRANSIENT)


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff after failed attempt number ``attempt`` (1-based):
    uniform in [0, min(max_delay, base_delay * 2**(attempt-1))]. Jitter spreads a burst
    of failures (a remote outage) so the retries do not return as one burst."""
    cap = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return (rng or random).uniform(0, cap)


def decide(
    classification: Classification,
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after failed attempt number ``attempt`` (1-based, counting this one)."""
    kind = classification.kind
    if kind is FailureKind.PERMANENT:
        return Decision(False, 0.0, kind, "permanent error: not retried")
    if attempt >= policy.max_attempts:
        return Decision(False, 0.0, kind, f"attempts exhausted ({attempt}/{policy.max_attempts})")
    if kind is FailureKind.AUTH:
        if attempt > policy.auth_retries:
            return Decision(False, 0.0, kind, "authentication still refused after a retry")
        return Decision(True, policy.base_delay, kind, "authentication refused: one retry")
    if kind is FailureKind.RATE_LIMITED:
        wait = classification.retry_after
        if wait is None:
            wait = backoff(attempt, policy, rng)
        if wait > policy.max_rate_limit_wait:
            return Decision(False, 0.0, kind, f"remote asked to wait {wait:.0f}s: too long")
        return Decision(True, wait, kind, "rate limited: waiting as told")
    return Decision(True, backoff(attempt, policy, rng), kind, "transient error: backoff")


def retry_policy_for(task: Any, queue: str) -> RetryPolicy:
    """Queue defaults, overridden by the task's max_attempts / retry_* attributes."""
    fields: dict[str, Any] = dict(settings.TASKYARD_DEFAULT_RETRY)
    fields.update(settings.TASKYARD_QUEUES.get(queue, {}).get("retry", {}))
    for attribute, field in (
        ("max_attempts", "max_attempts"),
        ("retry_base_delay", "base_delay"),
        ("retry_max_delay", "max_delay"),
    ):
        value = getattr(task, attribute, None)
        if value is not None:
            fields[field] = value
    return RetryPolicy(**fields)

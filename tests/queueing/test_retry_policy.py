"""The retry classification table of docs/job-ledger.md, as plain functions."""

from __future__ import annotations

import random

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError

from queueing.ledger.retry import (
    Classification,
    FailureKind,
    PermanentError,
    RateLimited,
    RetryPolicy,
    backoff,
    classify,
    decide,
)


class FakeHTTPError(Exception):
    def __init__(self, status: int, headers: dict | None = None):
        super().__init__(f"HTTP {status}")
        self.response = type("R", (), {"status_code": status, "headers": headers or {}})()


class StatusCodeError(Exception):  # shaped like stripe/twilio errors
    def __init__(self, status: int):
        super().__init__(f"status {status}")
        self.http_status = status


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionError("refused"), FailureKind.TRANSIENT),
        (TimeoutError(), FailureKind.TRANSIENT),
        (OperationalError("database is locked"), FailureKind.TRANSIENT),
        (FakeHTTPError(500), FailureKind.TRANSIENT),
        (FakeHTTPError(503), FailureKind.TRANSIENT),
        (FakeHTTPError(408), FailureKind.TRANSIENT),
        (StatusCodeError(502), FailureKind.TRANSIENT),
        (KeyError("bug"), FailureKind.TRANSIENT),  # unrecognised: a deploy can heal it
        (FakeHTTPError(429), FailureKind.RATE_LIMITED),
        (RateLimited(30), FailureKind.RATE_LIMITED),
        (FakeHTTPError(401), FailureKind.AUTH),
        (StatusCodeError(403), FailureKind.AUTH),
        (PermanentError("no address"), FailureKind.PERMANENT),
        (ValidationError("bad postcode"), FailureKind.PERMANENT),
        (FakeHTTPError(400), FailureKind.PERMANENT),
        (FakeHTTPError(404), FailureKind.PERMANENT),
        (FakeHTTPError(422), FailureKind.PERMANENT),
    ],
)
def test_classification(exc, kind):
    assert classify(exc).kind is kind


def test_429_takes_the_wait_from_retry_after():
    assert classify(FakeHTTPError(429, {"Retry-After": "12"})).retry_after == 12.0
    assert classify(FakeHTTPError(429, {"Retry-After": "Wed, 21 Oct 2015"})).retry_after is None
    assert classify(RateLimited(retry_after=7.5)).retry_after == 7.5


POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=60.0)


def attempts_until_dead(kind: FailureKind, retry_after: float | None = None) -> list[float]:
    """Delays chosen after each failed attempt, until the policy gives up."""
    rng = random.Random(7)
    delays = []
    for attempt in range(1, 100):
        decision = decide(Classification(kind, retry_after), attempt, POLICY, rng)
        if not decision.retry:
            return delays
        delays.append(decision.delay)
    raise AssertionError("never gave up")


def test_transient_retries_until_max_attempts_with_capped_full_jitter():
    delays = attempts_until_dead(FailureKind.TRANSIENT)
    assert len(delays) == 4  # 5 attempts in all
    for attempt, delay in enumerate(delays, start=1):
        assert 0 <= delay <= min(60.0, 2.0 * 2 ** (attempt - 1))


def test_rate_limited_waits_what_the_remote_said():
    assert attempts_until_dead(FailureKind.RATE_LIMITED, retry_after=30.0) == [30.0] * 4


def test_rate_limit_longer_than_the_policy_allows_is_not_waited_on():
    decision = decide(Classification(FailureKind.RATE_LIMITED, 10 * 24 * 3600), 1, POLICY)
    assert not decision.retry


def test_auth_gets_exactly_one_retry():
    assert attempts_until_dead(FailureKind.AUTH) == [2.0]


def test_permanent_is_never_retried():
    assert attempts_until_dead(FailureKind.PERMANENT) == []


def test_backoff_caps_at_max_delay_and_jitters():
    rng = random.Random(1)
    samples = [backoff(30, POLICY, rng) for _ in range(200)]
    assert max(samples) <= 60.0
    assert min(samples) < 30.0 < max(samples)  # spread over the whole range


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=10, max_delay=1)

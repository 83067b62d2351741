"""The provider guard against a real SDK and a local fake that fails on demand: breaker,
adaptive rate, outcome classes, cost (Redis state shared the way workers share it)."""

from __future__ import annotations

import pytest
import stripe

from devstack.fakes import stripe as stripe_fake
from queueing.control.providers import (
    ProviderDeferred,
    ProviderGuard,
    outcome_of,
    provider_call,
    provider_status,
)
from queueing.specs import provider_specs
from tests.factories import forget_provider
from tests.harness import wait_until

KEY = "sk_test_taskyard"


@pytest.fixture
def fake():
    with stripe_fake.serve() as server:
        yield server


@pytest.fixture
def provider(settings, fake):
    settings.TASKYARD_PROVIDERS = {
        "stripe-test": {
            "base_url": fake.url,
            "timeout": 2,
            "rate_limit": "20/s",
            "cost_per_call": 0.01,
            "monthly_budget": 1.0,
            "breaker": {"failures": 3, "open_seconds": 1, "window": 30, "min_calls": 50},
        }
    }
    spec = provider_specs()["stripe-test"]
    forget_provider(spec.name)
    yield spec
    forget_provider(spec.name)


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        KEY,
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=2),
    )


def create_customer(spec, fake) -> str:
    with provider_call(spec.name):
        return client(fake.url).v1.customers.create(params={"email": "a@example.com"}).id


def test_successful_calls_are_counted_with_their_cost(provider, fake):
    for _ in range(3):
        assert create_customer(provider, fake).startswith("cus_")
    status = provider_status(provider)
    assert status["state"] == "closed" and status["recent_calls"] >= 3
    assert status["error_rate"] == 0 and status["p95_ms"] is not None
    assert status["cost_today"] == pytest.approx(0.03, abs=1e-9)
    assert status["last_success_at"] is not None


def test_failures_open_the_breaker_then_a_probe_closes_it(provider, fake):
    fake.fail_next(500, times=3)
    for _ in range(3):
        with pytest.raises(stripe.APIError):
            create_customer(provider, fake)
    assert provider_status(provider)["state"] == "open"
    calls_before = fake.count()
    with pytest.raises(ProviderDeferred, match="circuit breaker open") as deferred:
        create_customer(provider, fake)
    assert 0 < deferred.value.wait <= 1.0
    assert fake.count() == calls_before  # the provider was not called while open

    # After open_seconds the next call probes; the fake has healed, so it closes.
    wait_until(lambda: provider_status(provider)["state"] == "half_open", timeout=3)
    assert create_customer(provider, fake).startswith("cus_")
    assert provider_status(provider)["state"] == "closed"


def test_a_failed_probe_opens_the_breaker_again(provider, fake):
    fake.fail_next(503, times=4)
    for _ in range(3):
        with pytest.raises(stripe.APIError):
            create_customer(provider, fake)
    wait_until(lambda: provider_status(provider)["state"] == "half_open", timeout=3)
    with pytest.raises(stripe.APIError):
        create_customer(provider, fake)  # the probe fails
    assert provider_status(provider)["state"] == "open"
    assert provider_status(provider)["opened_count"] == 2


def test_client_errors_do_not_count_against_the_provider(provider, fake):
    fake.fail_next(400, times=5)
    for _ in range(5):
        with pytest.raises(stripe.InvalidRequestError):
            create_customer(provider, fake)
    status = provider_status(provider)
    assert status["state"] == "closed" and status["error_rate"] == 0


def test_a_429_halves_the_rate_holds_calls_and_defers_without_failing(provider, fake):
    fake.fail_next(429, retry_after=1)
    with pytest.raises(ProviderDeferred, match="429") as deferred:
        create_customer(provider, fake)
    assert deferred.value.wait == pytest.approx(1.0)
    status = provider_status(provider)
    assert status["effective_rate"] == "10/s" and status["rate_limited_count"] == 1
    assert status["state"] == "closed"
    with pytest.raises(ProviderDeferred, match="rate limited by the provider"):
        create_customer(provider, fake)  # held until Retry-After passed
    # Once the provider's wait passed, calls go through and success raises the rate again.
    wait_until(lambda: ProviderGuard(provider).peek() is None, timeout=3)

    def recovered() -> bool:
        create_customer(provider, fake)
        return provider_status(provider)["effective_rate"] == "20/s"

    wait_until(recovered, timeout=15, interval=0.1)


def test_outcome_classes():
    class Answer(Exception):
        def __init__(self, status: int) -> None:
            self.status_code = status

    assert outcome_of(Answer(503)) == "transient"
    assert outcome_of(Answer(429)) == "rate_limited"
    assert outcome_of(Answer(401)) == "auth"
    assert outcome_of(Answer(404)) == "permanent"
    assert outcome_of(TimeoutError()) == "transient"
    assert outcome_of(KeyError("bug")) == "error"

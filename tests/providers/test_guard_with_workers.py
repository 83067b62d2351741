"""The provider guard with real worker processes: the breaker opens for every worker,
deferred jobs keep their attempt count, half-open lets one probe through and recovery
closes it; 429s lower the shared rate and raise it back, and no job dies of them."""

from __future__ import annotations

import datetime as dt

import pytest

import queueing
from devstack.fakes import stripe as stripe_fake
from queueing.control.providers import provider_status
from queueing.models import Job, JobStatus
from queueing.specs import provider_specs
from tests.factories import forget_provider
from tests.harness import start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def fake():
    with stripe_fake.serve() as server:
        yield server


@pytest.fixture
def workers(fake, relay):
    forget_provider("fakepay")
    started = [
        start_worker(queues=["isolated"], concurrency=1, env={"FAKEPAY_URL": fake.url})
        for _ in range(2)
    ]
    yield started
    for worker in started:
        worker.stop()


def status() -> dict:
    return provider_status(provider_specs()["fakepay"])


def open_for_at_least(seconds: float) -> bool:
    state = status()
    if state["state"] != "open" or not state["reopen_at"]:
        return False
    left = dt.datetime.fromisoformat(state["reopen_at"]) - dt.datetime.now(dt.UTC)
    return left.total_seconds() >= seconds


def jobs(ids) -> list[Job]:
    return list(Job.objects.filter(id__in=ids))


def test_the_breaker_opens_for_every_worker_and_recovers(fake, workers):
    fake.fail_next(503, times=10_000)
    ids = [queueing.enqueue("sampleapp.charge", [n]).id for n in range(8)]

    wait_until(lambda: status()["state"] == "open", timeout=20, message="breaker open")
    failed_calls = fake.count()
    assert failed_calls >= 3
    # While open, no worker calls the provider; waiting jobs are held without an attempt.
    wait_until(
        lambda: any(
            j.last_error_class == "taskyard.ProviderDeferred" or j.status == JobStatus.SCHEDULED
            for j in jobs(ids)
        ),
        timeout=10,
        message="jobs deferred",
    )
    held = [j for j in jobs(ids) if j.attempts == 0]
    assert held, "some jobs never spent an attempt: they were held, not failed"
    assert all(j.status != JobStatus.DEAD for j in jobs(ids))

    # Half-open after open_seconds: exactly one probe reaches the failing provider, and
    # it opens the breaker again. Counted from well inside an open period.
    wait_until(lambda: open_for_at_least(0.5), timeout=10, message="inside an open period")
    opened = status()["opened_count"]
    before = fake.count()
    wait_until(lambda: status()["opened_count"] > opened, timeout=10, message="probe failed")
    assert fake.count() - before == 1

    # The provider heals: the next probe succeeds, the breaker closes, every job runs.
    fake.clear_faults()
    wait_until(
        lambda: all(j.status == JobStatus.SUCCEEDED for j in jobs(ids)),
        timeout=40,
        message=lambda: f"all jobs succeeded: {[(j.status, j.attempts) for j in jobs(ids)]}",
    )
    assert status()["state"] == "closed"
    # Only real calls that failed cost attempts (the first failures, failed probes).
    assert all(j.attempts < j.max_attempts for j in jobs(ids)), [j.attempts for j in jobs(ids)]
    assert all(w.is_alive() for w in workers)


def test_429s_lower_the_shared_rate_and_no_job_dies_of_them(fake, workers):
    fake.fail_next(429, times=4, retry_after=1)
    ids = [queueing.enqueue("sampleapp.charge", [n]).id for n in range(10)]
    wait_until(lambda: status()["rate_limited_count"] >= 1, timeout=20, message="a 429")
    lowered = status()["effective_rate"]
    assert int(lowered.split("/")[0]) < 20, lowered
    wait_until(
        lambda: all(j.status == JobStatus.SUCCEEDED for j in jobs(ids)),
        timeout=40,
        message=lambda: f"all succeeded: {[(j.status, j.attempts) for j in jobs(ids)]}",
    )
    # A 429 is a deferral, not a failure: every job ran with its first attempt.
    assert [j.attempts for j in jobs(ids)] == [1] * len(ids)
    assert not Job.objects.filter(id__in=ids, status=JobStatus.DEAD).exists()

    # Success raises the rate back to the ceiling, one step per period.
    def recovered() -> bool:
        queueing.enqueue("sampleapp.charge", [99])
        return status()["effective_rate"] == "20/s"

    wait_until(recovered, timeout=30, interval=0.3, message="rate back to 20/s")

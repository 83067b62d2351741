"""Objects that tests across the suite need, built one way."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

import queueing
from queueing.ledger.retry import Decision, FailureKind, PermanentError
from queueing.ledger.transitions import claim, record_failure
from queueing.models import DeadLetter, DeadLetterReason, Job, JobStatus


def dead_letter(
    key: str = "invoice-42",
    *,
    kwargs: dict[str, Any] | None = None,
    priority: int | None = None,
    message: str = "customer 42 has no billing address",
) -> DeadLetter:
    """The dead letter of a ``tests.record`` job that died of a PermanentError on its first
    attempt, through the ledger itself (enqueue, claim, record_failure).

    On the isolated queue: no session worker runs the job or its replay while the test
    database is flushed (on PostgreSQL that TRUNCATE can deadlock with its writes). Equal
    messages give equal fingerprints."""
    job = queueing.enqueue("tests.record", [key], kwargs, priority=priority, queue="isolated")
    attempt = claim(str(job.id), "worker-a/1")
    assert attempt is not None
    decision = Decision(False, 0.0, FailureKind.PERMANENT, "permanent error: not retried")
    assert record_failure(attempt, PermanentError(message), decision) == JobStatus.DEAD
    return DeadLetter.objects.get(job=job)


def dead_letter_row(
    job: Job | None = None, *, queue: str = "routing", enqueued_by: User | None = None
) -> DeadLetter:
    """A dead letter written straight to the table, for ``job`` or for a new dead
    ``queueing.ping`` job on ``queue``: nothing is enqueued or published."""
    if job is None:
        now = timezone.now()
        job = Job.objects.create(
            task_name="queueing.ping",
            queue=queue,
            status=JobStatus.DEAD,
            attempts=1,
            max_attempts=1,
            enqueued_at=now,
            finished_at=now,
            enqueued_by=enqueued_by,
        )
    return DeadLetter.objects.create(job=job, reason=DeadLetterReason.PERMANENT, fingerprint="f")


def forget_provider(name: str) -> None:
    """No breaker state, rate log, call history, cost or counters of provider ``name``
    left from another test."""
    from queueing.broker import shared_redis
    from queueing.counters import PROVIDER_CALLS_KEY, PROVIDER_COST_KEY
    from tests.harness import delete_keys

    delete_keys(f"taskyard:*provider*{name}*", f"taskyard:rate:provider:{name}")
    client = shared_redis(text=True)
    client.hdel(PROVIDER_COST_KEY, name)
    for field in client.hkeys(PROVIDER_CALLS_KEY):
        if field.startswith(f"{name}|"):
            client.hdel(PROVIDER_CALLS_KEY, field)


def ended_attempt(
    *,
    queue: str,
    task: str = "tests.record",
    outcome: str = "succeeded",
    duration_ms: int = 100,
    finished_at,
    wait_ms: int = 0,
    status: str | None = None,
) -> Job:
    """A job of ``task`` on ``queue`` whose one attempt ended with ``outcome`` at
    ``finished_at`` after ``duration_ms``, having waited ``wait_ms`` since its enqueue:
    ledger rows written straight to the tables (history and report fixtures)."""
    import datetime as dt

    from queueing.models import JobAttempt

    started = finished_at - dt.timedelta(milliseconds=duration_ms)
    enqueued = started - dt.timedelta(milliseconds=wait_ms)
    final = {"succeeded": JobStatus.SUCCEEDED, "dead": JobStatus.DEAD}
    job = Job.objects.create(
        task_name=task,
        queue=queue,
        status=status or final.get(outcome, JobStatus.RETRYING),
        attempts=1,
        max_attempts=3,
        enqueued_at=enqueued,
        started_at=started,
        finished_at=finished_at if outcome in final else None,
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        fencing_token=1,
        worker="worker-a/1",
        started_at=started,
        finished_at=finished_at,
        duration_ms=duration_ms,
        outcome=outcome,
    )
    return job


_ASSET = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)""", re.IGNORECASE
)


def external_assets(html: str) -> list[str]:
    """The scripts, stylesheets, images and frames a page loads from another host (a CDN):
    the console must work offline and leak no visit to a third party. Reads the tags, not
    the text, so a random CSRF token that happens to spell "cdn" is no finding."""
    return [url for url in _ASSET.findall(html) if url.startswith(("http:", "https:", "//"))]

"""No-op tasks for bench/throughput.py: one plain Celery, one tracked by the ledger."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="bench.bare_noop", tracked=False)
def bare_noop(sent_at: float) -> list[float]:
    """Plain Celery (no ledger): returns when it was sent and when it started."""
    return [sent_at, time.time()]


@shared_task(name="bench.tracked_noop")
def tracked_noop(sent_at: float) -> None:
    """A Taskyard tracked job; its ledger row has enqueued_at and started_at."""

"""No-op tasks for bench/throughput.py: the same body as bare Celery and as a tracked job.

Both return ``[sent_at, started_at]``: the caller's time.time() just before ``.delay()``
and time.time() when the body starts, so enqueue-to-start is measured the same way for
both, from the stored result (the results table for one, ``Job.result`` for the other).
"""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="bench.bare_noop", tracked=False)
def bare_noop(sent_at: float) -> list[float]:
    """Plain Celery (``tracked = False``); django-celery-results stores the result."""
    return [sent_at, time.time()]


@shared_task(name="bench.tracked_noop")
def tracked_noop(sent_at: float) -> list[float]:
    """A Taskyard tracked job: Job row, claim under a lease, outcome in the ledger."""
    return [sent_at, time.time()]

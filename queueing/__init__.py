"""The platform core: job tracking, enqueue, retry policy, dead letters, queue control.

Public API (importable before Django is set up; the work happens in the submodules):

    queueing.enqueue(task, args=(), kwargs=None, *, queue=None, priority=None,
                     run_at=None, countdown=None, unique_key=None) -> Job

The design is written down in docs/job-ledger.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Task

    from queueing.models import Job


def enqueue(
    task: str | Task,
    args: Iterable = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: dt.datetime | str | None = None,
    countdown: float | None = None,
    unique_key: str | None = None,
    **options: Any,
) -> Job:
    """Insert a job in the caller's transaction and publish it after commit.

    Returns the Job (or the active job already holding ``unique_key``). Raises
    queueing.ledger.EnqueueError subclasses for an unknown task or queue, arguments that
    are not JSON or too large, a bad priority, countdown or run_at; nothing is written
    then. Further options: see queueing.ledger.enqueue.
    """
    from queueing.ledger import enqueue as _enqueue

    return _enqueue(
        task,
        args,
        kwargs,
        queue=queue,
        priority=priority,
        run_at=run_at,
        countdown=countdown,
        unique_key=unique_key,
        **options,
    )

"""The platform core: job tracking, enqueue, retry policy, dead letters, queue control.

Public API (importable before Django is set up; the work happens in the submodules):

    queueing.enqueue(task, args=(), kwargs=None, *, queue=None, priority=None,
                     run_at=None, countdown=None, unique_key=None) -> Job
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from queueing.models import Job


def enqueue(task: Any, args: Any = (), kwargs: Any = None, **options: Any) -> Job:
    """Insert a job in the caller's transaction and publish it after commit; see
    queueing.ledger.enqueue for the options and the errors it raises."""
    from queueing.ledger import enqueue as _enqueue

    return _enqueue(task, args, kwargs, **options)

"""The base class of every Taskyard task (``Celery(task_cls=...)`` in config/celery.py).

Settings hold the project-wide delivery guarantees; this class holds what Celery only
lets a task class decide.
"""

from __future__ import annotations

from celery import Task

# Celery re-sends a task whose pool process died (task_retry_on_worker_lost) after
# ``default_retry_delay`` seconds; its default of 3 minutes leaves a killed job idle for no
# reason, since a crash is not a failure of the remote side that needs time to heal.
WORKER_LOST_RETRY_DELAY_SECONDS = 5


class TaskyardTask(Task):
    default_retry_delay = WORKER_LOST_RETRY_DELAY_SECONDS

"""The queue configuration at backup time, as JSON: declared queues, which are paused,
the cron schedules (django-celery-beat) and the named rate limits.

It goes into the manifest beside every backup, so an operator restoring last week's
database also sees which queues were paused and what ran when. Pause states are read
from queueing's ``QueueState`` rows, the durable source of truth (the Redis set
``taskyard:paused-queues`` is only a copy); queueing has no public function for them,
so the model is looked up through Django's app registry, never imported.
"""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.conf import settings
from django.utils import timezone


def _paused_queues() -> dict[str, dict[str, Any]]:
    queue_state = apps.get_model("queueing", "QueueState")
    return {
        state.name: {
            "paused": state.paused,
            "reason": state.reason,
            "changed_at": state.changed_at.isoformat() if state.changed_at else None,
        }
        for state in queue_state.objects.order_by("name")
    }


def _schedule(task: Any) -> dict[str, Any]:
    when: dict[str, Any] = {}
    if task.crontab_id:
        cron = task.crontab
        when["cron"] = " ".join(
            str(part)
            for part in (
                cron.minute,
                cron.hour,
                cron.day_of_month,
                cron.month_of_year,
                cron.day_of_week,
            )
        )
        when["timezone"] = str(cron.timezone)
    if task.interval_id:
        when["every"] = f"{task.interval.every} {task.interval.period}"
    if task.solar_id:
        when["solar"] = str(task.solar)
    if task.clocked_id:
        when["clocked"] = task.clocked.clocked_time.isoformat()
    return {
        "name": task.name,
        "task": task.task,
        **when,
        "enabled": task.enabled,
        "one_off": task.one_off,
        "queue": task.queue,
        "priority": task.priority,
        "args": json.loads(task.args or "[]"),
        "kwargs": json.loads(task.kwargs or "{}"),
        "last_run_at": task.last_run_at.isoformat() if task.last_run_at else None,
        "description": task.description,
    }


def queue_configuration() -> dict[str, Any]:
    """A JSON-ready description of the queues as configured right now."""
    from django_celery_beat.models import PeriodicTask

    states = _paused_queues()
    schedules = PeriodicTask.objects.select_related(
        "crontab", "interval", "solar", "clocked"
    ).order_by("name")
    return {
        "exported_at": timezone.now().isoformat(),
        "queues": {
            name: {
                **json.loads(json.dumps(spec, default=str)),
                "paused": states.get(name, {}).get("paused", False),
            }
            for name, spec in settings.TASKYARD_QUEUES.items()
        },
        "pause_states": states,
        "schedules": [_schedule(task) for task in schedules],
        "rate_limits": dict(settings.TASKYARD_RATE_LIMITS),
    }

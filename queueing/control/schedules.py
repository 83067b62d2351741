"""Recurring jobs declared by the apps, seeded into django-celery-beat's tables.

Each installed app may have a ``schedules.py`` with a ``SCHEDULES`` dict::

    SCHEDULES = {
        "billing: monthly invoices": {"task": "billing.run_invoices", "cron": "0 6 1 * *",
                                      "kwargs": {"period": "previous"}},
    }

After every ``migrate`` (post_migrate, so also after a test database flush) and on
``manage.py seed_schedules``, each entry whose name is missing is created, with the queue
the task is declared on. An existing entry is never overwritten, so an operator's edits
in the admin (time, enabled flag, arguments) survive deploys. A malformed entry (unknown
task, bad cron, unknown field) is an ImproperlyConfigured naming the app and the entry.
"""

from __future__ import annotations

import json
import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from queueing.discovery import app_modules
from queueing.ledger.enqueue import EnqueueError, resolve_queue, resolve_task

logger = logging.getLogger(__name__)

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_ENTRY_FIELDS = {"task", "cron", "kwargs", "priority", "description", "enabled", "timezone"}
# "timezone": "business" runs the cron on the business's clock (BUSINESS_TIME_ZONE: a
# report at the business's midnight); absent, on TIME_ZONE (UTC).
BUSINESS = "business"


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    cron: dict[str, str]
    queue: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    description: str = ""
    enabled: bool = True
    timezone: str = ""  # empty: settings.TIME_ZONE


def _timezone(raw: Any) -> str:
    if raw in (None, ""):
        return ""
    name = settings.BUSINESS_TIME_ZONE if raw == BUSINESS else str(raw)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {raw!r} is not a known time zone (or 'business')") from None
    return name


def parse_cron(expression: str) -> dict[str, str]:
    """ "17 * * * *" -> crontab fields; ValueError saying what is wrong."""
    parts = expression.split() if isinstance(expression, str) else []
    if len(parts) != len(CRON_FIELDS):
        raise ValueError(f"cron {expression!r} must have 5 fields: {' '.join(CRON_FIELDS)}")
    fields = dict(zip(CRON_FIELDS, parts, strict=True))
    try:
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from None
    return fields


def _entry(app_label: str, name: str, raw: Any) -> Schedule:
    where = f"{app_label}/schedules.py SCHEDULES[{name!r}]"
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{where}: must be a dict with task and cron")
    unknown = set(raw) - _ENTRY_FIELDS
    if unknown:
        raise ImproperlyConfigured(
            f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_ENTRY_FIELDS)}"
        )
    kwargs = raw.get("kwargs") or {}
    try:
        task = resolve_task(str(raw.get("task") or ""))
        queue = resolve_queue(task, None, [], dict(kwargs))
        cron = parse_cron(str(raw.get("cron") or ""))
        tz = _timezone(raw.get("timezone"))
        json.dumps(kwargs)
    except (EnqueueError, ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None
    return Schedule(
        name=name,
        task=task.name,
        cron=cron,
        queue=queue,
        kwargs=dict(kwargs),
        priority=raw.get("priority"),
        description=raw.get("description", ""),
        enabled=raw.get("enabled", True),
        timezone=tz,
    )


def declared_schedules() -> list[Schedule]:
    """Every installed app's SCHEDULES (queueing's own included), in app order."""
    found: list[Schedule] = []
    seen: dict[str, str] = {}
    for config, module in app_modules("schedules"):
        declared = getattr(module, "SCHEDULES", None)
        if not isinstance(declared, Mapping):
            raise ImproperlyConfigured(f"{config.name}/schedules.py must define a SCHEDULES dict")
        for name, raw in declared.items():
            if name in seen:
                raise ImproperlyConfigured(
                    f"schedule {name!r} is declared by both {seen[name]} and {config.name}"
                )
            seen[name] = config.name
            found.append(_entry(config.label, name, raw))
    return found


def seed_schedules() -> list[str]:
    """Create the declared schedules that are missing (by name); return their names."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    created = []
    for schedule in declared_schedules():
        with transaction.atomic():
            if PeriodicTask.objects.filter(name=schedule.name).exists():
                continue
            cron, _ = CrontabSchedule.objects.get_or_create(
                **schedule.cron, timezone=schedule.timezone or settings.TIME_ZONE
            )
            PeriodicTask.objects.create(
                name=schedule.name,
                task=schedule.task,
                crontab=cron,
                queue=schedule.queue,
                kwargs=json.dumps(schedule.kwargs),
                priority=schedule.priority,
                description=schedule.description,
                enabled=schedule.enabled,
            )
        created.append(schedule.name)
    if created:
        logger.info("seeded schedules: %s", ", ".join(created))
    return created


def seed_after_migrate(sender: Any, **kwargs: Any) -> None:
    """post_migrate receiver: seed once per migrate (on queueing's signal; every app's
    tables exist by then, post_migrate is sent after the whole plan ran)."""
    if sender.label == "queueing":
        seed_schedules()

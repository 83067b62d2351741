"""The backups' health for the platform's alert checks: what is wrong right now, in the
shape of queueing's alert findings — kind, queue, severity, value, threshold, message;
the alert key is ``kind:queue`` (here the queue field holds the database vendor).

queueing's ``check_alerts`` (every minute) reads them through maintenance/alerts.py and
opens, notifies, escalates and resolves Alert rows for them like for its own thresholds;
operators acknowledge and snooze them in the admin and the API (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from maintenance.models import Backup, BackupStatus

BACKUP_TASK = "maintenance.backup_database"


def _hours(since: dt.datetime, now: dt.datetime) -> float:
    return round((now - since).total_seconds() / 3600, 1)


def _installed_at() -> dt.datetime | None:
    """When maintenance's first migration was applied here: its install."""
    from django.db.migrations.recorder import MigrationRecorder

    return (
        MigrationRecorder.Migration.objects.filter(app="maintenance")
        .order_by("applied")
        .values_list("applied", flat=True)
        .first()
    )


def _schedule_enabled() -> bool:
    """The nightly backup's schedule exists and is enabled (an operator who turned it
    off backs up some other way)."""
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(task=BACKUP_TASK, enabled=True).exists()


def findings(now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """``backup_failed`` (critical) while the newest finished backup is a failed one;
    ``backup_stale`` (warning) when none was verified within BACKUP_MAX_AGE_HOURS (value:
    hours since the newest verified one, or since the oldest backup when none ever was),
    or when there is no backup at all that long after install while the nightly backup
    is scheduled (value: hours since install)."""
    now = now or timezone.now()
    found: list[dict[str, Any]] = []
    finished = Backup.objects.exclude(status=BackupStatus.RUNNING).order_by("-created_at")
    newest = finished.first()
    limit = float(settings.BACKUP_MAX_AGE_HOURS)
    if newest is None:
        # None ever: stale once the nightly schedule has had its chance since install.
        installed = _installed_at()
        if installed is not None and _schedule_enabled():
            age = _hours(installed, now)
            if age > limit:
                vendor = connection.vendor
                found.append(
                    {
                        "kind": "backup_stale",
                        "queue": vendor,
                        "key": f"backup_stale:{vendor}",
                        "severity": "warning",
                        "value": age,
                        "threshold": limit,
                        "message": f"no backup at all, {age:g} h after maintenance was "
                        f"installed, while the nightly backup is scheduled",
                    }
                )
        return found
    if newest.status == BackupStatus.FAILED:
        found.append(
            {
                "kind": "backup_failed",
                "queue": newest.vendor,
                "key": f"backup_failed:{newest.vendor}",
                "severity": "critical",
                "value": 1.0,
                "threshold": 0.0,
                "message": f"backup {newest} failed: {newest.error}",
                "backup_id": newest.pk,
            }
        )
    verified = finished.filter(status=BackupStatus.VERIFIED).first()
    since = verified or finished.last() or newest
    age = _hours(since.created_at, now)
    if age > limit:
        found.append(
            {
                "kind": "backup_stale",
                "queue": newest.vendor,
                "key": f"backup_stale:{newest.vendor}",
                "severity": "warning",
                "value": age,
                "threshold": limit,
                "message": f"no verified backup in the last {limit:g} h"
                + (f" (newest verified {age:g} h old)" if verified else " (none ever)"),
            }
        )
    return found

"""The backups' health for the platform's alert checks: what is wrong right now, in the
shape of queueing's alert findings — kind, queue, severity, value, threshold, message;
the alert key is ``kind:queue`` (here the queue field holds the database vendor).

queueing's ``check_alerts`` evaluates only its own thresholds and resolves every open
alert it did not find itself, and has no public function to open one, so these are not
Alert rows yet: ``findings()`` is the hook for the checks (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone

from maintenance.models import Backup, BackupStatus


def _hours(since: dt.datetime, now: dt.datetime) -> float:
    return round((now - since).total_seconds() / 3600, 1)


def findings(now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """``backup_failed`` (critical) while the newest finished backup is a failed one;
    ``backup_stale`` (warning) when backups are made here but none was verified within
    BACKUP_MAX_AGE_HOURS (value: hours since the newest verified one, or since the
    oldest backup when none ever was)."""
    now = now or timezone.now()
    found: list[dict[str, Any]] = []
    finished = Backup.objects.exclude(status=BackupStatus.RUNNING).order_by("-created_at")
    newest = finished.first()
    if newest is None:
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
    limit = float(settings.BACKUP_MAX_AGE_HOURS)
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

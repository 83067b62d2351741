"""The backups' health for the platform's alert checks: what is wrong right now, in the
shape of queueing's alert findings (kind, key, severity, value, threshold, message).

queueing's ``check_alerts`` only evaluates its own thresholds and resolves any open
alert it did not find itself, so these cannot be Alert rows yet; the lead wires
``findings()`` into the checks (see docs/operations.md, "Alerts").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone

from maintenance.models import Backup, BackupStatus


def findings(now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """``backup:failed`` (critical) when the newest finished backup failed;
    ``backup:stale`` (warning) when backups are made here but none verified within
    BACKUP_MAX_AGE_HOURS."""
    now = now or timezone.now()
    found: list[dict[str, Any]] = []
    finished = Backup.objects.exclude(status=BackupStatus.RUNNING)
    newest = finished.order_by("-created_at").first()
    if newest is None:
        return found
    if newest.status == BackupStatus.FAILED:
        found.append(
            {
                "kind": "backup",
                "key": "backup:failed",
                "severity": "critical",
                "value": 1.0,
                "threshold": 0.0,
                "message": f"backup {newest} failed: {newest.error}",
                "backup_id": newest.pk,
            }
        )
    max_age = dt.timedelta(hours=settings.BACKUP_MAX_AGE_HOURS)
    verified = finished.filter(status=BackupStatus.VERIFIED).order_by("-created_at").first()
    age_hours = (now - verified.created_at).total_seconds() / 3600 if verified else None
    if age_hours is None or age_hours > max_age.total_seconds() / 3600:
        found.append(
            {
                "kind": "backup",
                "key": "backup:stale",
                "severity": "warning",
                "value": round(age_hours, 1) if age_hours is not None else None,
                "threshold": float(settings.BACKUP_MAX_AGE_HOURS),
                "message": "no verified backup in the last "
                f"{settings.BACKUP_MAX_AGE_HOURS} h"
                + (f" (newest {age_hours:.0f} h old)" if age_hours is not None else ""),
            }
        )
    return found

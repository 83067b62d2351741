"""Maintenance's own alerts, raised by the platform's alert check every minute
(queueing/observe/alerts.py reads each app's ``alerts.findings(now)``): a failed backup
(critical) and no verified backup for BACKUP_MAX_AGE_HOURS (warning)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from maintenance.backups import health


def findings(now: dt.datetime) -> list[dict[str, Any]]:
    return health.findings(now)

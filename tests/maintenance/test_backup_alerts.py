"""A failed backup is a platform alert: opened by the minute's check (through
maintenance/alerts.py), answered like any other, resolved by the next good backup."""

from __future__ import annotations

import pytest
from django.utils import timezone

from maintenance.models import Backup, BackupStatus
from queueing.models import Alert, AlertStatus
from queueing.observe.alerts import check

pytestmark = pytest.mark.django_db


def backup(status: str, name: str, error: str = "") -> Backup:
    now = timezone.now()
    return Backup.objects.create(
        path=f"backups/{name}",
        vendor="sqlite",
        status=status,
        created_at=now,
        finished_at=now,
        error=error,
    )


def test_a_failed_backup_opens_a_critical_alert_that_a_verified_one_resolves(settings):
    settings.HEALTH_WORKER_QUEUES = []
    backup(BackupStatus.FAILED, "bad.sqlite3", error="row counts differ: queueing_job 10 != 9")
    assert "backup_failed:sqlite" in check()["opened"]
    alert = Alert.objects.get(key="backup_failed:sqlite")
    assert alert.severity == "critical" and "row counts differ" in alert.message

    backup(BackupStatus.VERIFIED, "good.sqlite3")
    assert "backup_failed:sqlite" in check()["resolved"]
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED

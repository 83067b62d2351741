"""A failed backup is a platform alert: opened by the minute's check (through
maintenance/alerts.py), answered like any other, resolved by the next good backup. So is
a backup that could not even start, and no backup at all long after install."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from maintenance.backups import health, operations
from maintenance.backups.files import BackupError
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


def test_a_backup_that_cannot_start_is_a_failed_row_and_an_alert(settings, tmp_path):
    """An unwritable BACKUP_DIR (here: a path under a file) fails before any dump: the
    row exists all the same, FAILED with the reason, and the alert opens."""
    settings.HEALTH_WORKER_QUEUES = []
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.BACKUP_DIR = blocker / "backups"

    with pytest.raises(BackupError, match="cannot be created"):
        operations.create_backup()

    failed = Backup.objects.get()
    assert failed.status == BackupStatus.FAILED and "cannot be created" in failed.error
    assert f"backup_failed:{connection.vendor}" in check()["opened"]


def test_no_backup_at_all_is_stale_once_the_schedule_had_its_chance(settings):
    settings.HEALTH_WORKER_QUEUES = []
    settings.BACKUP_MAX_AGE_HOURS = 26
    key = f"backup_stale:{connection.vendor}"
    assert PeriodicTask.objects.get(task="maintenance.backup_database").enabled
    assert key not in {f["key"] for f in health.findings()}  # installed just now

    # Installed 30 hours ago, nightly backup enabled, and still no backup: stale.
    later = timezone.now() + dt.timedelta(hours=30)
    [stale] = [f for f in health.findings(later) if f["key"] == key]
    assert stale["severity"] == "warning" and stale["value"] >= 30
    assert "no backup at all" in stale["message"]
    # An operator who switched the nightly backup off backs up some other way.
    PeriodicTask.objects.filter(task="maintenance.backup_database").update(enabled=False)
    assert health.findings(later) == []


def test_rotation_fails_abandoned_backups_and_deletes_their_partial_files(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path
    now = timezone.now()
    abandoned = Backup.objects.create(
        path=str(tmp_path / "taskyard-sqlite-old.sqlite3"),
        vendor="sqlite",
        created_at=now - dt.timedelta(hours=7),
    )
    writing = Backup.objects.create(
        path=str(tmp_path / "taskyard-sqlite-new.sqlite3"), vendor="sqlite", created_at=now
    )
    old_partial = tmp_path / "taskyard-sqlite-old.sqlite3.partial"
    old_partial.write_bytes(b"cut off")
    seven_hours_ago = (now - dt.timedelta(hours=7)).timestamp()
    os.utime(old_partial, (seven_hours_ago, seven_hours_ago))
    new_partial = tmp_path / "taskyard-sqlite-new.sqlite3.partial"
    new_partial.write_bytes(b"being written")

    operations.rotate(now)

    abandoned.refresh_from_db()
    writing.refresh_from_db()
    assert abandoned.status == BackupStatus.FAILED and "abandoned" in abandoned.error
    assert writing.status == BackupStatus.RUNNING
    assert not old_partial.exists() and new_partial.exists()

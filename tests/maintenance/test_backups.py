"""Backups (issue 17): a backup restores whole, rotation keeps the documented set, a
damaged backup fails verification and alerts, restore asks first.

The same module runs on SQLite and on PostgreSQL (DATABASE_URL): backups and restores
are real (SQLite's backup API, pg_dump/pg_restore) and target the test database itself,
so the tests that back up rows or restore are transactional (rows committed, flushed
afterwards); the others run in a rolled-back transaction, cheaper on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from maintenance.backups import health, operations
from maintenance.backups.files import sha256_of
from maintenance.backups.rotation import Candidate, RetentionPolicy, backups_to_keep
from maintenance.backups.verify import verify_backup
from maintenance.models import Backup, BackupStatus
from maintenance.tasks import backup_database
from queueing import Job, JobStatus
from queueing.observe.alerts import check as check_alerts
from tests.harness import wait_until

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
UTC = dt.UTC


# --- rotation: a pure rule, tested with dates -------------------------------------------


def nightly(first: dt.date, last: dt.date) -> list[Candidate[dt.date]]:
    """One backup per night at 00:30 UTC (01:30 in Amsterdam in winter)."""
    days = (last - first).days + 1
    return [
        Candidate(day, dt.datetime.combine(day, dt.time(0, 30), UTC))
        for day in (first + dt.timedelta(days=n) for n in range(days))
    ]


def test_rotation_keeps_7_dailies_4_weeklies_and_12_monthlies():
    backups = nightly(dt.date(2025, 10, 1), dt.date(2026, 12, 1))
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # Tuesday

    kept = backups_to_keep(backups, RetentionPolicy(), now=now, zone=AMSTERDAM)

    dailies = {dt.date(2026, 11, 25) + dt.timedelta(days=n) for n in range(7)}
    # The newest of each of the last 4 ISO weeks: this week's Tuesday, then Sundays.
    weeklies = {dt.date(2026, 12, 1), dt.date(2026, 11, 29), dt.date(2026, 11, 22)}
    weeklies |= {dt.date(2026, 11, 15)}
    # The newest of each of the last 12 months: today, then each month's last day.
    monthlies = {dt.date(2026, 12, 1)} | {
        dt.date(2026, month + 1, 1) - dt.timedelta(days=1) for month in range(1, 12)
    }
    assert len(monthlies) == 12 and dt.date(2026, 1, 31) in monthlies
    assert kept == dailies | weeklies | monthlies
    assert len(kept) == 19


def test_rotation_counts_only_periods_that_have_a_backup():
    """Backups that stopped a month ago are not rotated away: the last 7 nights that
    have a backup are kept, however old."""
    backups = nightly(dt.date(2026, 9, 1), dt.date(2026, 10, 31))
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

    kept = backups_to_keep(
        backups, RetentionPolicy(daily=7, weekly=0, monthly=0), now=now, zone=AMSTERDAM
    )

    assert kept == {dt.date(2026, 10, 25) + dt.timedelta(days=n) for n in range(7)}


def test_rotation_days_are_business_days_and_recent_manual_backups_stay():
    evening = Candidate("nov-30-evening", dt.datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    manual = Candidate("dec-1-manual", dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    earlier = Candidate("nov-30-morning", dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC))
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    policy = RetentionPolicy(daily=1, weekly=0, monthly=0, within_hours=0)

    # 23:30 UTC on 30 November is 00:30 on 1 December in Amsterdam: the same day as the
    # manual one, which is newer; the morning of the 30th is another (older) day.
    assert backups_to_keep([evening, manual, earlier], policy, now=now, zone=AMSTERDAM) == {
        "dec-1-manual"
    }
    # Within 24 hours everything usable stays (a manual backup beside the night's).
    policy = RetentionPolicy(daily=1, weekly=0, monthly=0, within_hours=24)
    assert backups_to_keep([evening, manual, earlier], policy, now=now, zone=AMSTERDAM) == {
        "nov-30-evening",
        "dec-1-manual",
    }


def test_rotation_never_counts_a_failed_backup_and_drops_it_after_a_week():
    good = nightly(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    failed_today = Candidate(
        dt.date(2026, 12, 1), dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC), usable=False
    )
    failed_long_ago = Candidate(
        dt.date(2026, 10, 1), dt.datetime(2026, 10, 1, 0, 30, tzinfo=UTC), usable=False
    )
    policy = RetentionPolicy(daily=7, weekly=0, monthly=0, within_hours=0)

    kept = backups_to_keep([*good, failed_today, failed_long_ago], policy, now=now, zone=AMSTERDAM)

    # The failed one of today does not push out the 7th good night.
    assert kept == {dt.date(2026, 11, 24) + dt.timedelta(days=n) for n in range(7)} | {
        dt.date(2026, 12, 1)
    }


@pytest.mark.django_db
def test_rotate_deletes_the_files_and_rows_the_policy_drops(backup_dir, settings):
    settings.BACKUP_KEEP = {"daily": 2, "weekly": 0, "monthly": 0, "within_hours": 0}
    now = timezone.now()
    made = []
    for days_ago in (0, 1, 2, 3):
        path = backup_dir / f"old-{days_ago}.sqlite3"
        path.write_bytes(b"x")
        manifest = path.with_name(path.name + ".json")
        manifest.write_text("{}")
        made.append(
            Backup.objects.create(
                path=str(path),
                vendor=connection.vendor,
                status=BackupStatus.VERIFIED,
                created_at=now - dt.timedelta(days=days_ago),
                manifest_path=str(manifest),
            )
        )

    removed = operations.rotate(now=now)

    assert sorted(removed) == sorted([made[2].path, made[3].path])
    assert set(Backup.objects.values_list("pk", flat=True)) == {made[0].pk, made[1].pk}
    assert sorted(p.name for p in backup_dir.iterdir()) == [
        "old-0.sqlite3",
        "old-0.sqlite3.json",
        "old-1.sqlite3",
        "old-1.sqlite3.json",
    ]


# --- backup, wipe, restore --------------------------------------------------------------


@pytest.fixture
def backup_dir(settings, tmp_path) -> Path:
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_DIR.mkdir()
    return settings.BACKUP_DIR


def table_counts() -> dict[str, int]:
    """Rows of every table the backup counts: not SQLite's own sqlite_* tables (upkeep's
    ANALYZE creates sqlite_stat1, and a backup neither counts nor compares it)."""
    with connection.cursor() as cursor:
        counts = {}
        for table in connection.introspection.table_names(cursor):
            if table.startswith("sqlite_"):
                continue
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def checksum() -> str:
    """A digest of every column a user would look at in three tables."""
    rows = [
        list(User.objects.order_by("pk").values_list("pk", "username", "email", "password")),
        list(Group.objects.order_by("pk").values_list("pk", "name")),
        list(
            Job.objects.order_by("pk").values_list(
                "pk", "task_name", "queue", "status", "kwargs", "enqueued_at"
            )
        ),
        list(PeriodicTask.objects.order_by("pk").values_list("pk", "name", "task", "kwargs")),
    ]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def make_rows() -> None:
    now = timezone.now()
    for n in range(5):
        user = User.objects.create_user(f"driver{n}", f"driver{n}@example.nl", "pw")
        user.groups.add(Group.objects.get_or_create(name=f"depot-{n % 2}")[0])
    Job.objects.bulk_create(
        Job(
            task_name="maintenance.backup_database",
            queue="maintenance",
            status=JobStatus.SUCCEEDED if n % 3 else JobStatus.DEAD,
            max_attempts=3,
            enqueued_at=now - dt.timedelta(minutes=n),
            finished_at=now,
            kwargs={"n": n, "note": "naïve ✓"},
        )
        for n in range(40)
    )


@pytest.mark.django_db(transaction=True)
def test_backup_wipe_restore_gives_back_identical_rows(backup_dir):
    make_rows()
    before, digest = table_counts(), checksum()

    backup = operations.create_backup()

    assert backup.status == BackupStatus.VERIFIED, backup.error
    assert Path(backup.path).is_file() and backup.sha256 == sha256_of(Path(backup.path))
    # Counted in the dump's own snapshot, which already held the backup's own row.
    assert backup.row_counts == {**before, "maintenance_backup": 1}
    assert backup.verification["tables"] == backup.row_counts

    Job.objects.filter(status=JobStatus.SUCCEEDED).delete()
    User.objects.filter(username__in=["driver1", "driver3"]).delete()
    Group.objects.all().delete()
    PeriodicTask.objects.filter(name__startswith="maintenance:").delete()
    assert table_counts() != {**before, "maintenance_backup": 1}

    out = io.StringIO()
    call_command("restore", backup.path, "--yes", stdout=out)

    after = table_counts()
    assert after == {**before, "maintenance_backup": 1}
    assert checksum() == digest
    assert after["queueing_job"] == 40 and after["auth_user"] == 5
    assert re.search(r"^  queueing_job +40$", out.getvalue(), re.MULTILINE)
    # The catalogue is as it was before the restore: the backup is still listed.
    assert Backup.objects.get().path == backup.path


@pytest.mark.django_db
def test_the_manifest_beside_the_backup_holds_the_queue_configuration(backup_dir):
    apps.get_model("queueing", "QueueState").objects.create(
        name="billing", paused=True, reason="month-end freeze"
    )

    backup = operations.create_backup(verify=False)

    manifest = json.loads(Path(backup.manifest_path).read_text())
    assert Path(backup.manifest_path).parent == Path(backup.path).parent == backup_dir
    assert manifest["backup"]["sha256"] == backup.sha256
    assert manifest["backup"]["row_counts"] == backup.row_counts
    config = manifest["queue_configuration"]
    assert config["queues"]["billing"]["paused"] is True
    assert config["queues"]["routing"]["paused"] is False
    assert config["queues"]["maintenance"]["concurrency"] == 1
    assert config["pause_states"]["billing"]["reason"] == "month-end freeze"
    nightly_backup = next(
        s for s in config["schedules"] if s["name"] == "maintenance: back up the database"
    )
    assert nightly_backup["task"] == "maintenance.backup_database"
    assert nightly_backup["cron"] == "30 1 * * *" and nightly_backup["enabled"] is True
    assert config["rate_limits"]["sendgrid"] == "100/m"


# --- verification failures ---------------------------------------------------------------


def scratch_databases() -> list[str]:
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'taskyard_verify_%%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_truncated_backup_fails_verification_and_alerts_once(
    backup_dir, settings, caplog, mailoutbox, fresh_rollups
):
    settings.ALERT_EMAILS = ["ops@example.nl"]
    settings.HEALTH_WORKER_QUEUES = []
    make_rows()
    backup = operations.create_backup(verify=False)
    path = Path(backup.path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with caplog.at_level(logging.ERROR, logger="maintenance"):
        verify_backup(backup)

    backup.refresh_from_db()
    assert backup.status == BackupStatus.FAILED
    assert "SHA-256 differs" in backup.error
    assert any(
        r.levelno == logging.ERROR and str(backup.path) in r.getMessage() for r in caplog.records
    )
    finding = next(f for f in health.findings() if f["key"] == f"backup_failed:{connection.vendor}")
    assert finding["severity"] == "critical" and finding["backup_id"] == backup.pk
    # One notification: the alert check's, not one from verification and one from it.
    assert mailoutbox == []
    assert f"backup_failed:{connection.vendor}" in check_alerts()["opened"]
    check_alerts()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["ops@example.nl"]
    assert "CRITICAL opened" in mailoutbox[0].subject and path.name in mailoutbox[0].subject


@pytest.mark.django_db(transaction=True)
def test_a_backup_written_damaged_fails_its_restore_and_leaves_no_scratch_database(
    backup_dir,
):
    """Damage that happened before the checksum was taken (a bad disk, a cut dump):
    only restoring the file finds it."""
    make_rows()
    backup = operations.create_backup(verify=False)
    path = Path(backup.path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    Backup.objects.filter(pk=backup.pk).update(sha256=sha256_of(path))
    backup.refresh_from_db()

    verify_backup(backup)

    backup.refresh_from_db()
    assert backup.status == BackupStatus.FAILED
    assert backup.verification["ok"] is False and backup.error
    # pg_restore cannot read it / SQLite finds the image malformed; the file is named.
    assert "SHA-256" not in backup.error and path.name in backup.error
    assert scratch_databases() == []


@pytest.mark.django_db(transaction=True)
def test_a_row_count_mismatch_fails_verification_naming_the_table(backup_dir):
    make_rows()
    backup = operations.create_backup(verify=False)
    Backup.objects.filter(pk=backup.pk).update(row_counts={**backup.row_counts, "queueing_job": 41})
    backup.refresh_from_db()

    verify_backup(backup)

    backup.refresh_from_db()
    assert backup.status == BackupStatus.FAILED
    assert backup.error == "queueing_job: 41 rows at backup, 40 restored"


# --- the restore command: asks first, refuses what it cannot restore whole ---------------


class Keyboard(io.StringIO):
    """What an operator types at a terminal."""

    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.mark.django_db
def test_restore_refuses_without_a_terminal_unless_yes(backup_dir):
    backup = operations.create_backup(verify=False)
    User.objects.create_user("after-the-backup")

    with pytest.raises(CommandError, match="add --yes") as refused:
        call_command("restore", backup.path, stdin=Pipe("yes\n"))

    assert connection.settings_dict["NAME"] in str(refused.value)
    assert User.objects.filter(username="after-the-backup").exists()


@pytest.mark.django_db
def test_restore_asks_for_the_database_name_and_stops_on_another_answer(backup_dir):
    backup = operations.create_backup(verify=False)
    User.objects.create_user("after-the-backup")
    out = io.StringIO()

    with pytest.raises(CommandError, match="not confirmed; nothing was changed"):
        call_command("restore", str(backup.pk), stdin=Keyboard("yes\n"), stdout=out)

    assert f"Type the database name ({connection.settings_dict['NAME']})" in out.getvalue()
    assert User.objects.filter(username="after-the-backup").exists()


@pytest.mark.django_db
def test_restore_refuses_a_missing_foreign_or_damaged_file(backup_dir, tmp_path):
    User.objects.create_user("still-here")
    other = tmp_path / "other-vendor.bin"
    if connection.vendor == "sqlite":
        other.write_bytes(b"PGDMP\x01\x0e\x00" + b"\x00" * 64)
    else:
        sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    backup = operations.create_backup(verify=False)
    path = Path(backup.path)
    path.write_bytes(path.read_bytes()[:4096])

    with pytest.raises(CommandError, match="no such backup file"):
        call_command("restore", str(tmp_path / "nope.pgdump"), "--yes")
    with pytest.raises(CommandError, match=f"this database .* is {connection.vendor}"):
        call_command("restore", str(other), "--yes")
    with pytest.raises(CommandError, match="changed since it was written"):
        call_command("restore", backup.path, "--yes")
    with pytest.raises(CommandError, match="no backup with id 999"):
        call_command("restore", "999", "--yes")
    assert User.objects.filter(username="still-here").exists()


@pytest.mark.django_db(transaction=True)
def test_a_restore_that_fails_halfway_leaves_the_database_as_it_was(backup_dir):
    """PostgreSQL: bytes flipped inside the archive (its table of contents intact) break
    pg_restore after --clean dropped the tables; the single transaction undoes it all.
    SQLite: a cut file is refused by the integrity check before anything is written."""
    make_rows()
    backup = operations.create_backup(verify=False)
    User.objects.create_user("after-the-backup")
    before, digest = table_counts(), checksum()
    path = Path(backup.path)
    data = bytearray(path.read_bytes())
    if connection.vendor == "postgresql":
        middle = len(data) * 2 // 3
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    Backup.objects.filter(pk=backup.pk).update(sha256=sha256_of(path))

    with pytest.raises(CommandError, match=path.name):
        call_command("restore", backup.path, "--yes")

    assert table_counts() == before and checksum() == digest
    assert User.objects.filter(username="after-the-backup").exists()


# --- the job, on a real worker -------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_nightly_job_backs_up_verifies_and_reports(celery_worker):
    make_rows()

    job_id = backup_database.delay().id

    job = wait_until(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED).first(),
        timeout=60,
        message=lambda: f"job {Job.objects.get(pk=job_id).status}:\n{celery_worker.log()[-3000:]}",
    )
    backup = Backup.objects.get(pk=job.result["backup"])
    try:
        assert backup.status == BackupStatus.VERIFIED and backup.trigger == "scheduled"
        assert job.result["path"] == backup.path and Path(backup.path).is_file()
        assert backup.row_counts["queueing_job"] >= 40
        assert backup.verification["tables"] == backup.row_counts
    finally:
        Path(backup.path).unlink(missing_ok=True)
        Path(backup.manifest_path).unlink(missing_ok=True)

"""The admin pages of backups and upkeep runs, and the "verify now" action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from maintenance.backups import health
from maintenance.models import Backup, BackupStatus, UpkeepRun
from queueing import Job


@pytest.fixture
def backups(db) -> list[Backup]:
    now = timezone.now()
    good = Backup.objects.create(
        path="/srv/backups/taskyard-sqlite-good.sqlite3",
        vendor="sqlite",
        status=BackupStatus.VERIFIED,
        created_at=now - dt.timedelta(hours=2),
        size_bytes=3 * 1024 * 1024,
        row_counts={"queueing_job": 40, "auth_user": 5},
        verified_at=now,
        verification={"ok": True, "tables": {"queueing_job": 40, "auth_user": 5}},
    )
    bad = Backup.objects.create(
        path="/srv/backups/taskyard-sqlite-bad.sqlite3",
        vendor="sqlite",
        status=BackupStatus.FAILED,
        created_at=now,
        size_bytes=1000,
        row_counts={"queueing_job": 41},
        verification={"ok": False, "tables": {"queueing_job": 40}},
        error="queueing_job: 41 rows at backup, 40 restored",
    )
    return [good, bad]


def test_the_backup_list_shows_size_status_and_result(admin_client, backups):
    page = admin_client.get(reverse("admin:maintenance_backup_changelist")).content.decode()

    assert "taskyard-sqlite-good.sqlite3" in page and "3.0 MiB" in page
    assert "45 rows restored" in page
    assert "queueing_job: 41 rows at backup, 40 restored" in page


def test_a_backup_page_compares_rows_per_table(admin_client, backups):
    url = reverse("admin:maintenance_backup_change", args=[backups[1].pk])
    page = admin_client.get(url).content.decode()

    assert "<td>queueing_job</td><td>41</td><td>40</td><td>≠</td>" in page


def test_verify_now_queues_one_job_per_backup(admin_client, backups):
    response = admin_client.post(
        reverse("admin:maintenance_backup_changelist"),
        {"action": "verify_now", "_selected_action": [b.pk for b in backups]},
        follow=True,
    )

    assert "2 backup(s) queued for verification" in response.content.decode()
    queued = Job.objects.filter(task_name="maintenance.verify_backup")
    assert sorted(job.kwargs["backup_id"] for job in queued) == sorted(b.pk for b in backups)
    assert {job.queue for job in queued} == {"maintenance"}


def test_an_upkeep_run_page_shows_sizes_and_bloat(admin_client, db):
    run = UpkeepRun.objects.create(
        vendor="postgresql",
        maintained=["queueing_job"],
        tables=[
            {
                "table": "queueing_job",
                "rows": 900,
                "dead_rows": 100,
                "dead_ratio": 0.1,
                "total_bytes": 10 * 1024 * 1024,
                "bloat_bytes": 1024 * 1024,
                "last_vacuum": "2026-12-01T03:15:00+00:00",
            }
        ],
    )

    listing = admin_client.get(reverse("admin:maintenance_upkeeprun_changelist")).content
    page = admin_client.get(reverse("admin:maintenance_upkeeprun_change", args=[run.pk]))

    assert b"queueing_job (10.0 MiB)" in listing
    assert (
        "<td>queueing_job</td><td>900</td><td>100</td><td>10.0%</td><td>10.0 MiB</td>"
        "<td>1.0 MiB</td>" in page.content.decode()
    )


def test_health_reports_a_failed_and_a_stale_backup(backups, settings):
    settings.BACKUP_MAX_AGE_HOURS = 1

    found = {f["key"]: f for f in health.findings()}

    assert found["backup_failed:sqlite"]["severity"] == "critical"
    assert "41 rows at backup" in found["backup_failed:sqlite"]["message"]
    assert found["backup_stale:sqlite"]["severity"] == "warning"
    assert found["backup_stale:sqlite"]["value"] == 2.0
    settings.BACKUP_MAX_AGE_HOURS = 26
    Backup.objects.filter(status=BackupStatus.FAILED).delete()
    assert health.findings() == []

"""The admin pages of backups and upkeep runs, the "verify now" action, "run now" for
the maintenance jobs (asked, permission-checked, audited) and deleting a backup."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from maintenance.backups import health
from maintenance.models import Backup, BackupStatus, UpkeepRun
from queueing import Job
from queueing.models import AuditEvent


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


# --- run now, delete ------------------------------------------------------------------


def test_back_up_now_asks_first_then_queues_one_audited_job(admin_client, admin_user, db):
    listing = admin_client.get(reverse("admin:maintenance_backup_changelist")).content.decode()
    url = reverse("admin:maintenance_run_now", args=["backup"])
    assert url in listing and "Back up now" in listing and "Run upkeep now" in listing

    page = admin_client.get(url).content.decode()
    assert "back up the database now" in page and 'id="confirm-run"' in page
    assert not Job.objects.exists()  # asking changes nothing

    response = admin_client.post(url, {"confirm": "yes"}, follow=True)
    job = Job.objects.get(task_name="maintenance.backup_database")
    assert (job.queue, job.enqueued_by) == ("maintenance", admin_user)
    assert f"Queued maintenance.backup_database on maintenance (job {job.id})" in (
        response.content.decode()
    )
    event = AuditEvent.objects.get(action="job.create")
    assert (event.target_id, event.reason) == (str(job.id), "via admin")

    # A second click while it waits adds nothing (the backup's unique key).
    again = admin_client.post(url, {"confirm": "yes"}, follow=True).content.decode()
    assert "already waiting or running" in again
    assert Job.objects.count() == 1 and AuditEvent.objects.count() == 1

    admin_client.post(reverse("admin:maintenance_run_now", args=["upkeep"]), {"confirm": "yes"})
    assert Job.objects.filter(task_name="maintenance.database_upkeep").count() == 1


def test_run_now_is_for_those_who_may_enqueue_maintenance_jobs(client, db):
    staff = User.objects.create_user("clerk", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename="view_backup"))
    client.force_login(staff)
    listing = client.get(reverse("admin:maintenance_backup_changelist"))
    assert listing.status_code == 200 and b"Back up now" not in listing.content
    for url in (
        reverse("admin:maintenance_run_now", args=["backup"]),
        reverse("admin:maintenance_run_now", args=["upkeep"]),
        reverse("admin:queueing_dailyreport_rebuild"),
    ):
        assert client.get(url).status_code == 403
        assert client.post(url, {"confirm": "yes"}).status_code == 403
    assert not Job.objects.exists() and not AuditEvent.objects.exists()


def test_rebuild_report_takes_a_day_the_ledger_still_holds(admin_client, settings, db):
    from queueing.observe.report import business_today

    # Kept 3 days: yesterday is held whole whatever the hour (by default only until ~02:00).
    settings.TASKYARD_DEFAULT_RETENTION = {"succeeded": 72 * 3600, "dead": 7 * 86400}
    settings.TASKYARD_DEFAULT_RETENTION["cancelled"] = 7 * 86400

    url = reverse("admin:queueing_dailyreport_rebuild")
    page = admin_client.get(url).content.decode()
    yesterday = business_today() - dt.timedelta(days=1)
    assert f'value="{yesterday.isoformat()}"' in page and "rebuild the daily report" in page

    today = admin_client.post(url, {"confirm": "yes", "day": business_today().isoformat()})
    assert "has not ended yet" in today.content.decode()
    old = (business_today() - dt.timedelta(days=5)).isoformat()
    pruned = admin_client.post(url, {"confirm": "yes", "day": old})
    assert "no longer holds all of" in pruned.content.decode()
    assert not Job.objects.exists()

    admin_client.post(url, {"confirm": "yes", "day": yesterday.isoformat()})
    held = Job.objects.get(task_name="queueing.daily_report")
    assert held.kwargs == {"day": yesterday.isoformat()} and held.queue == "maintenance"
    reports = admin_client.get(reverse("admin:queueing_dailyreport_changelist")).content
    assert url.encode() in reports and b"Rebuild report" in reports


def test_deleting_a_backup_deletes_its_files_and_says_so_first(admin_client, settings, tmp_path):
    now = timezone.now()
    path = tmp_path / "taskyard-sqlite-x.sqlite3"
    manifest = tmp_path / "taskyard-sqlite-x.sqlite3.json"
    path.write_bytes(b"SQLite format 3\x00")
    manifest.write_text("{}")
    backup = Backup.objects.create(
        path=str(path),
        manifest_path=str(manifest),
        vendor="sqlite",
        status=BackupStatus.VERIFIED,
        created_at=now,
    )
    running = Backup.objects.create(
        path=str(tmp_path / "taskyard-sqlite-y.sqlite3"), vendor="sqlite", created_at=now
    )
    delete_url = reverse("admin:maintenance_backup_delete", args=[backup.pk])

    page = admin_client.get(delete_url).content.decode()
    assert "also deletes its file and its" in page
    assert path.exists()  # asking deletes nothing
    admin_client.post(delete_url, {"post": "yes"})

    assert not path.exists() and not manifest.exists()
    assert not Backup.objects.filter(pk=backup.pk).exists()
    event = AuditEvent.objects.get(action="backup.delete")
    assert event.after["files_deleted"] == [str(path), str(manifest)]
    # A backup being written is its job's.
    running_url = reverse("admin:maintenance_backup_delete", args=[running.pk])
    assert admin_client.post(running_url, {"post": "yes"}).status_code == 403
    listing = reverse("admin:maintenance_backup_changelist")
    bulk = {"action": "delete_selected", "_selected_action": [running.pk]}
    assert b"also deletes its file" in admin_client.post(listing, bulk).content
    admin_client.post(listing, {**bulk, "post": "yes"})
    assert Backup.objects.filter(pk=running.pk, status=BackupStatus.RUNNING).exists()

"""Maintenance's own tables."""

from __future__ import annotations

from pathlib import Path

from django.db import models
from django.utils import timezone


class DemoDataset(models.Model):
    """That the demo company was seeded here, once: a first ``make run`` seeds it, a later
    start does not seed it again, even after ``seed_demo --clear`` removed it."""

    seeded_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    # Rows created per app and model by the last seed, e.g. {"billing": {"Customer": 300}}.
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "demo dataset"

    def __str__(self) -> str:
        return f"demo data seeded {self.seeded_at:%Y-%m-%d %H:%M}" if self.seeded_at else "demo"


class BackupStatus(models.TextChoices):
    RUNNING = "running", "Running"
    CREATED = "created", "Written, not verified"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"


class Backup(models.Model):
    """One backup file of the whole database (maintenance/backups/, docs/operations.md).

    ``row_counts`` are the rows of every table at backup time, counted in the dump's own
    snapshot; verification restores the file into a scratch database and compares. A
    FAILED newest backup is a critical alert (maintenance/alerts.py), notified by the
    platform's alert check. Deleting a row (admin, rotation) deletes its files too.
    """

    path = models.CharField(max_length=500, unique=True)
    vendor = models.CharField(max_length=16)  # connection.vendor: "sqlite", "postgresql"
    # Who asked for it: the nightly job, `manage.py backup`, the admin.
    trigger = models.CharField(max_length=16, default="manual")
    status = models.CharField(
        max_length=16, choices=BackupStatus.choices, default=BackupStatus.RUNNING
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    row_counts = models.JSONField(default=dict, blank=True)
    # The JSON manifest beside the file: row counts and the queue configuration.
    manifest_path = models.CharField(max_length=500, blank=True, default="")
    verified_at = models.DateTimeField(null=True, blank=True)
    # {"ok": bool, "seconds": float, "tables": {table: restored rows}, "mismatches": [...]}
    verification = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{Path(self.path).name} ({self.status})"

    @property
    def usable(self) -> bool:
        """Written completely and not proven broken: rotation counts it as a backup."""
        return self.status in (BackupStatus.CREATED, BackupStatus.VERIFIED)


class UpkeepRun(models.Model):
    """One run of database upkeep (maintenance/upkeep.py): what was vacuumed/analysed and
    the table sizes and bloat estimates seen afterwards."""

    ran_at = models.DateTimeField(default=timezone.now, db_index=True)
    vendor = models.CharField(max_length=16)
    duration_ms = models.PositiveIntegerField(default=0)
    # Tables VACUUM (ANALYZE)d on PostgreSQL; on SQLite ANALYZE + PRAGMA optimize cover all.
    maintained = models.JSONField(default=list, blank=True)
    # One dict per table: rows, dead_rows, dead_ratio, total_bytes, bloat_bytes, ...
    tables = models.JSONField(default=list, blank=True)
    # SQLite: free pages a VACUUM would give back (bytes); PostgreSQL: null.
    reclaimable_bytes = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-ran_at"]

    def __str__(self) -> str:
        return f"upkeep {self.ran_at:%Y-%m-%d %H:%M} ({self.vendor})"

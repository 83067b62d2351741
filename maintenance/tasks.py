"""Maintenance jobs on the ``maintenance`` queue (concurrency 1, lowest priority): thin
wrappers around maintenance.backups and maintenance.upkeep (docs/operations.md)."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import serializers

from maintenance import upkeep
from maintenance.backups import operations
from maintenance.backups.files import BackupError
from maintenance.backups.verify import verify_backup as verify
from maintenance.models import Backup, BackupStatus
from queueing import Contract, Job, PermanentError, TransientError, job

logger = logging.getLogger(__name__)

# Nothing else of the maintenance queue is more important than a backup or upkeep, and
# nothing on other queues should wait for them.
LOWEST_PRIORITY = 9


# API contracts (POST /api/v1/queue/maintenance/..., or /jobs with the task's name). The
# role model has no operator role below admin, so every maintenance job is admins only
# (roles=(): enqueue_any).


class BackupArgs(Contract):
    """maintenance.backup_database: back up now."""

    verify = serializers.BooleanField(
        required=False, help_text="restore into a scratch database and compare (default: yes)"
    )


class UpkeepArgs(Contract):
    """maintenance.database_upkeep: no arguments."""


class VerifyBackupArgs(Contract):
    """maintenance.verify_backup: verify one backup of the catalogue again."""

    backup_id = serializers.IntegerField(min_value=1, help_text="a backup's id")

    def validate_backup_id(self, value: int) -> int:
        backup = Backup.objects.filter(pk=value).first()
        if backup is None:
            raise serializers.ValidationError(f"no backup {value}")
        if backup.status == BackupStatus.RUNNING:
            raise serializers.ValidationError(f"backup {value} is still being written")
        return value


class BackupVerificationFailed(PermanentError):
    """The backup was written but does not restore whole: a new attempt would not fix
    the cause, and the dead letter is one more place where an operator sees it."""


def _trigger(job_id: Any) -> str:
    """What the Backup row says asked for it: "manual" when a person enqueued the job (the
    admin's "Back up now", the API), "scheduled" for beat's."""
    by_user = Job.objects.filter(id=job_id, enqueued_by__isnull=False).exists() if job_id else False
    return "manual" if by_user else "scheduled"


def _backup_result(backup: Backup) -> dict[str, Any]:
    return {
        "backup": backup.pk,
        "path": backup.path,
        "status": backup.status,
        "size_bytes": backup.size_bytes,
        "tables": len(backup.row_counts),
        "rows": sum(backup.row_counts.values()),
        "error": backup.error,
    }


@job(
    queue="maintenance",
    name="maintenance.backup_database",
    unique_key="maintenance:backup",
    priority=LOWEST_PRIORITY,
    retry={"max_attempts": 3, "base_delay": 300},
    atomic=False,
    bind=True,
    api=BackupArgs,
    roles=(),
)
def backup_database(self: Any, verify: bool = True) -> dict[str, Any]:
    """Back the database up, verify the file by restoring it, then rotate old backups."""
    try:
        backup = operations.create_backup(verify=verify, trigger=_trigger(self.job_id))
    except BackupError as exc:
        logger.error("job %s: backup could not be written: %s", self.request.id, exc)
        raise TransientError(str(exc)) from exc
    if backup.status == BackupStatus.FAILED:
        logger.error("job %s: backup %s failed verification", self.request.id, backup.path)
        raise BackupVerificationFailed(f"backup {backup.path} failed verification: {backup.error}")
    removed = operations.rotate()
    return {**_backup_result(backup), "rotated_out": removed}


@job(
    queue="maintenance",
    name="maintenance.verify_backup",
    unique_key="maintenance:verify:{backup_id}",
    priority=LOWEST_PRIORITY,
    retry={"max_attempts": 1},
    atomic=False,
    bind=True,
    api=VerifyBackupArgs,
    roles=(),
)
def verify_backup(self: Any, backup_id: int) -> dict[str, Any]:
    """Verify one existing backup again (the admin's "verify now")."""
    backup = Backup.objects.filter(pk=backup_id).first()
    if backup is None:
        return {"skipped": f"no backup {backup_id}"}
    backup = verify(backup)
    if backup.status == BackupStatus.FAILED:
        logger.error("job %s: backup %s failed verification", self.request.id, backup.path)
    return _backup_result(backup)


@job(
    queue="maintenance",
    name="maintenance.database_upkeep",
    unique_key="maintenance:upkeep",
    priority=LOWEST_PRIORITY,
    retry={"max_attempts": 2, "base_delay": 600},
    # VACUUM refuses to run inside a transaction block.
    atomic=False,
    bind=True,
    api=UpkeepArgs,
    roles=(),
)
def database_upkeep(self: Any) -> dict[str, Any]:
    """VACUUM (ANALYZE) the ledger's hot tables (ANALYZE + PRAGMA optimize on SQLite) and
    report table sizes and bloat."""
    try:
        run = upkeep.run_upkeep()
    except upkeep.UpkeepError as exc:
        logger.error("job %s: database upkeep refused: %s", self.request.id, exc)
        raise PermanentError(str(exc)) from exc
    return upkeep.summary(run)

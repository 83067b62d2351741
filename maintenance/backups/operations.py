"""Make a backup, rotate old ones, restore one: the functions the command, the jobs and
the admin call (docs/operations.md)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connections
from django.utils import timezone

from maintenance.backups.config_export import queue_configuration
from maintenance.backups.files import (
    BackupError,
    backup_name,
    manifest_path,
    sha256_of,
    vendor_of,
)
from maintenance.backups.rotation import Candidate, RetentionPolicy, backups_to_keep
from maintenance.backups.verify import engine_for, verify_backup
from maintenance.models import Backup, BackupStatus

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def backup_dir() -> Path:
    folder = Path(settings.BACKUP_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"BACKUP_DIR {folder} cannot be created: {exc}") from exc
    return folder


def create_backup(*, verify: bool = True, trigger: str = "manual") -> Backup:
    """Back the whole database up into BACKUP_DIR, write its manifest beside it, verify it
    (unless ``verify`` is False). The file appears under its final name only once
    complete. A backup that cannot be written, or cannot even start, raises BackupError
    (its row says FAILED); one that fails verification is returned with status FAILED.
    Either way the minute's alert check opens backup_failed (maintenance/alerts.py)."""
    current = connections["default"]
    now = timezone.now()
    path = Path(settings.BACKUP_DIR) / backup_name(current.vendor, now)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    # The row first: a backup that cannot even start (no engine for this database, a
    # BACKUP_DIR that cannot be written) is a FAILED row too, so the alert fires.
    backup = Backup.objects.create(
        path=str(path), vendor=current.vendor, trigger=trigger, created_at=now
    )
    started = time.monotonic()
    try:
        engine = engine_for(current.vendor)
        backup_dir()
        counts = engine.dump(current.settings_dict, partial)
        partial.rename(path)
    except Exception as exc:
        with contextlib.suppress(OSError):  # BACKUP_DIR may not even exist
            partial.unlink(missing_ok=True)
        Backup.objects.filter(pk=backup.pk).update(
            status=BackupStatus.FAILED, finished_at=timezone.now(), error=str(exc)[:4000]
        )
        logger.error("backup %s (id %s) could not be written: %s", path, backup.pk, exc)
        if isinstance(exc, BackupError):
            raise
        raise BackupError(f"{path.name} could not be written: {exc}") from exc
    backup.row_counts = counts
    backup.size_bytes = path.stat().st_size
    backup.sha256 = sha256_of(path)
    backup.finished_at = timezone.now()
    backup.status = BackupStatus.CREATED
    backup.manifest_path = str(write_manifest(backup))
    backup.save()
    logger.info(
        "backup %s written: %d bytes, %d tables, %d rows, in %.1f s",
        path,
        backup.size_bytes,
        len(counts),
        sum(counts.values()),
        time.monotonic() - started,
    )
    return verify_backup(backup) if verify else backup


def write_manifest(backup: Backup) -> Path:
    """``<backup>.json``: what the file holds (vendor, checksum, row counts) and the queue
    configuration of that moment, so the pair explains itself without this database."""
    target = manifest_path(Path(backup.path))
    manifest = {
        "backup": {
            "file": Path(backup.path).name,
            "vendor": backup.vendor,
            "created_at": backup.created_at.isoformat(),
            "size_bytes": backup.size_bytes,
            "sha256": backup.sha256,
            "row_counts": backup.row_counts,
        },
        "queue_configuration": queue_configuration(),
    }
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


# A backup still RUNNING after this long was abandoned (its worker died mid-dump): its
# row is marked FAILED and its .partial file deleted by the next rotation. Far above the
# longest backup we expect (a 10 GB dump and its verification take well under an hour).
ABANDONED_AFTER = dt.timedelta(hours=6)


def clean_abandoned(now: dt.datetime | None = None) -> dict[str, int]:
    """Mark RUNNING rows older than ABANDONED_AFTER as FAILED and delete ``.partial``
    files in BACKUP_DIR older than that (a dump that was cut off); returns the counts."""
    now = now or timezone.now()
    cutoff = now - ABANDONED_AFTER
    stale = Backup.objects.filter(status=BackupStatus.RUNNING, created_at__lt=cutoff)
    rows = stale.update(
        status=BackupStatus.FAILED,
        finished_at=now,
        error=f"abandoned: still running after {ABANDONED_AFTER} (its worker died?)",
    )
    files = 0
    folder = Path(settings.BACKUP_DIR)
    for partial in folder.glob(f"*{PARTIAL_SUFFIX}") if folder.is_dir() else ():
        if partial.stat().st_mtime < cutoff.timestamp():
            partial.unlink(missing_ok=True)
            files += 1
    if rows or files:
        logger.warning(
            "backups: %d abandoned row(s) failed, %d partial file(s) deleted", rows, files
        )
    return {"abandoned_rows": rows, "partial_files": files}


def rotate(now: Any = None) -> list[str]:
    """Delete the backups (file, manifest, row) that the retention policy (BACKUP_KEEP)
    does not keep; return their paths. Backups still being written are never touched;
    abandoned ones are failed first (clean_abandoned)."""
    now = now or timezone.now()
    clean_abandoned(now)
    finished = list(Backup.objects.exclude(status=BackupStatus.RUNNING))
    keep = backups_to_keep(
        (Candidate(b.pk, b.created_at, b.usable) for b in finished),
        RetentionPolicy.from_settings(settings.BACKUP_KEEP),
        now=now,
        zone=ZoneInfo(settings.BUSINESS_TIME_ZONE),
    )
    removed = []
    for backup in finished:
        if backup.pk in keep:
            continue
        delete_backup(backup)
        removed.append(backup.path)
        logger.info("backup %s rotated out", backup.path)
    return removed


def delete_backup(backup: Backup) -> list[str]:
    """Delete a backup's file, its manifest and its row; return the files deleted."""
    deleted = []
    for name in (backup.path, backup.manifest_path):
        if name and Path(name).is_file():
            Path(name).unlink(missing_ok=True)
            deleted.append(name)
    backup.delete()
    return deleted


def resolve(reference: str) -> Path:
    """A backup named by its id in the catalogue or by its path; BackupError if neither."""
    if reference.isdigit():
        backup = Backup.objects.filter(pk=int(reference)).first()
        if backup is None:
            raise BackupError(f"no backup with id {reference}")
        return Path(backup.path)
    return Path(reference).expanduser().resolve()


def check_restorable(path: Path) -> str:
    """The vendor of ``path`` once it is known to be an intact backup of this database's
    vendor, unchanged since it was written; BackupError otherwise. Reads, never writes."""
    current = connections["default"]
    vendor = vendor_of(path)
    if vendor != current.vendor:
        raise BackupError(
            f"{path.name} is a {vendor} backup; this database "
            f"({current.settings_dict['NAME']}) is {current.vendor}"
        )
    expected = _expected_sha256(path)
    if expected and sha256_of(path) != expected:
        raise BackupError(f"{path.name} changed since it was written (SHA-256 differs)")
    engine_for(vendor).check_archive(path)
    return vendor


def _expected_sha256(path: Path) -> str:
    backup = Backup.objects.filter(path=str(path)).first()
    if backup is not None:
        return backup.sha256
    manifest = manifest_path(path)
    if manifest.is_file():
        try:
            return str(json.loads(manifest.read_text())["backup"]["sha256"])
        except (ValueError, KeyError, TypeError):
            return ""
    return ""


def restore_backup(path: Path, *, checked: bool = False) -> dict[str, int]:
    """Replace this database's content with the backup at ``path``; return the row counts
    after the restore. Checks first (check_restorable; ``checked`` says the caller just
    did) and restores in one transaction, so a bad file leaves the database untouched.
    The backup catalogue (Backup rows) is kept as it was before the restore: the files
    on disk did not change."""
    vendor = vendor_of(path) if checked else check_restorable(path)
    catalogue: list[dict[str, Any]] = [dict(row) for row in Backup.objects.values()]
    current = connections["default"]
    # The restore replaces tables under every open connection of this process.
    connections.close_all()
    counts = engine_for(vendor).restore_into(current.settings_dict, path)
    _put_back(catalogue)
    logger.warning(
        "database %s restored from %s: %d tables, %d rows",
        current.settings_dict["NAME"],
        path,
        len(counts),
        sum(counts.values()),
    )
    return counts


def _put_back(catalogue: list[dict[str, Any]]) -> None:
    if Backup._meta.db_table not in connections["default"].introspection.table_names():
        logger.warning("the restored database predates the backup catalogue; not put back")
        return
    Backup.objects.all().delete()
    Backup.objects.bulk_create(
        Backup(**{k: v for k, v in row.items() if k != "id"}) for row in catalogue
    )

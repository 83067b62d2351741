"""Verification: a backup counts only once it has been restored somewhere and found whole.

``verify_backup`` checks the file's SHA-256, restores it into a scratch database (a
temporary file on SQLite, a database created and dropped on PostgreSQL) and compares
the rows of every table with the counts taken in the dump's own snapshot. A failure
marks the Backup row failed and logs an ERROR; the platform's alert check
(queueing/observe/alerts.py, through maintenance/alerts.py) then opens a critical
``backup_failed`` alert and tells the operators, once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils import timezone

from maintenance.backups import postgres, sqlite
from maintenance.backups.files import BackupError, sha256_of, vendor_of
from maintenance.models import Backup, BackupStatus

logger = logging.getLogger(__name__)

ENGINES: dict[str, Any] = {"sqlite": sqlite, "postgresql": postgres}


def engine_for(vendor: str) -> Any:
    """The module that backs up and restores ``vendor``'s databases."""
    try:
        return ENGINES[vendor]
    except KeyError:
        raise BackupError(f"no backup support for {vendor} databases") from None


def compare_counts(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    """What differs between the counts at backup time and after a restore, one line per
    table (empty when identical)."""
    problems = []
    for table in sorted(expected.keys() | restored.keys()):
        if table not in restored:
            problems.append(f"{table}: missing after restore ({expected[table]} rows expected)")
        elif table not in expected:
            problems.append(f"{table}: not in the backup's counts ({restored[table]} rows)")
        elif expected[table] != restored[table]:
            problems.append(
                f"{table}: {expected[table]} rows at backup, {restored[table]} restored"
            )
    return problems


def _check(backup: Backup) -> dict[str, int]:
    path = Path(backup.path)
    current = connections["default"]
    if vendor_of(path) != backup.vendor:
        raise BackupError(f"{path.name} is not a {backup.vendor} backup")
    if backup.vendor == "postgresql" and current.vendor != "postgresql":
        raise BackupError(f"{path.name}: a PostgreSQL backup is verified on a PostgreSQL server")
    if backup.sha256 and sha256_of(path) != backup.sha256:
        raise BackupError(f"{path.name} changed since it was written (SHA-256 differs)")
    return engine_for(backup.vendor).restore_to_scratch(current.settings_dict, path)


def verify_backup(backup: Backup) -> Backup:
    """Restore ``backup`` into a scratch database and compare row counts; record the
    outcome on the row (VERIFIED or FAILED) and alert on failure. Never raises for a bad
    backup: the row says what went wrong."""
    started = time.monotonic()
    restored: dict[str, int] = {}
    try:
        restored = _check(backup)
        problems = compare_counts(backup.row_counts, restored)
    except BackupError as exc:
        problems = [str(exc)]
    backup.verified_at = timezone.now()
    backup.verification = {
        "ok": not problems,
        "seconds": round(time.monotonic() - started, 3),
        "tables": restored,
        "mismatches": problems,
    }
    backup.status = BackupStatus.FAILED if problems else BackupStatus.VERIFIED
    backup.error = "; ".join(problems)[:4000]
    backup.save(update_fields=["verified_at", "verification", "status", "error"])
    if problems:
        # No email from here: the minute's alert check opens backup_failed and notifies
        # once, like every alert (acknowledge, snooze, resolved by the next good backup).
        logger.error(
            "backup %s (id %s) failed verification: %s", backup.path, backup.pk, backup.error
        )
    else:
        logger.info(
            "backup %s verified: %d tables, %d rows, in %.1f s",
            backup.path,
            len(restored),
            sum(restored.values()),
            backup.verification["seconds"],
        )
    return backup

"""`manage.py backup [--no-verify] [--no-rotate]`: back the database up now
(docs/operations.md)."""

from __future__ import annotations

from argparse import BooleanOptionalAction
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from maintenance.backups import operations
from maintenance.backups.files import BackupError
from maintenance.models import BackupStatus


class Command(BaseCommand):
    help = (
        "Back the whole database up into BACKUP_DIR (with a JSON manifest beside it), "
        "verify it by restoring it into a scratch database, and rotate old backups."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--verify",
            action=BooleanOptionalAction,
            default=True,
            help="restore the backup into a scratch database and compare row counts (default: yes)",
        )
        parser.add_argument(
            "--rotate",
            action=BooleanOptionalAction,
            default=True,
            help="delete the backups the retention policy (BACKUP_KEEP) drops (default: yes)",
        )

    def handle(self, *args: Any, verify: bool, rotate: bool, **options: Any) -> None:
        try:
            backup = operations.create_backup(verify=verify, trigger="manual")
        except BackupError as exc:
            raise CommandError(f"backup failed: {exc}") from exc
        rows = sum(backup.row_counts.values())
        self.stdout.write(
            f"{backup.path}\n  {backup.size_bytes} bytes, {len(backup.row_counts)} tables, "
            f"{rows} rows, sha256 {backup.sha256}\n  manifest {backup.manifest_path}"
        )
        if backup.status == BackupStatus.FAILED:
            raise CommandError(f"backup {backup.path} failed verification: {backup.error}")
        if verify:
            seconds = backup.verification.get("seconds")
            self.stdout.write(f"  verified: restored with identical row counts in {seconds} s")
        else:
            self.stdout.write("  not verified (--no-verify)")
        if rotate:
            for path in operations.rotate():
                self.stdout.write(f"rotated out {path}")

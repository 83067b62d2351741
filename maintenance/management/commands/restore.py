"""`manage.py restore BACKUP [--yes]`: replace this database with a backup
(docs/operations.md)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from maintenance.backups import operations
from maintenance.backups.files import BackupError


class Command(BaseCommand):
    help = (
        "Replace this database's content with a backup (a path, or a backup id from the "
        "admin). Asks first, naming the database; checks the file before touching anything "
        "and restores in one transaction."
    )
    # call_command(..., stdin=...) gives tests the operator's keyboard (as createsuperuser).
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("backup", help="path of the backup file, or its id")
        parser.add_argument(
            "--yes",
            action="store_true",
            help="do not ask (needed when not run from a terminal)",
        )

    def handle(self, *args: Any, backup: str, yes: bool, **options: Any) -> None:
        stdin = options.get("stdin") or sys.stdin  # call_command(stdin=...) in tests
        current = connections["default"]
        database = f"{current.vendor} database {current.settings_dict['NAME']!r}"
        try:
            path = operations.resolve(backup)
            operations.check_restorable(path)
        except BackupError as exc:
            raise CommandError(f"cannot restore: {exc}") from exc
        if not yes:
            if not stdin.isatty():
                raise CommandError(
                    f"restoring {path.name} overwrites the {database}; not run from a "
                    "terminal, so nobody can confirm: add --yes"
                )
            self.stdout.write(
                f"This replaces every table of the {database} with {path}.\n"
                "Stop the web, worker, beat and relay processes first. "
                f"Type the database name ({current.settings_dict['NAME']}) to go on: ",
                ending="",
            )
            self.stdout.flush()
            answer = stdin.readline().strip()
            if answer != current.settings_dict["NAME"]:
                raise CommandError("not confirmed; nothing was changed")
        try:
            counts = operations.restore_backup(path, checked=True)
        except BackupError as exc:
            raise CommandError(f"restore failed, the database is unchanged: {exc}") from exc
        self.stdout.write(f"restored {path} into the {database}:")
        width = max((len(table) for table in counts), default=0)
        for table, rows in counts.items():
            self.stdout.write(f"  {table.ljust(width)}  {rows}")
        self.stdout.write(f"{len(counts)} tables, {sum(counts.values())} rows")

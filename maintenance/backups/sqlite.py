"""SQLite backups through SQLite's online backup API (``sqlite3.Connection.backup``).

The API copies the database page by page inside one read transaction of the source, so
the copy is a consistent snapshot even while workers write (WAL mode). Row counts are
taken from the copy itself, so they describe exactly what the file holds.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from maintenance.backups.files import BackupError

# How long to wait for a writer's lock, as Django's own connections do.
DEFAULT_BUSY_TIMEOUT_SECONDS = 20.0


def _timeout(db: dict[str, Any]) -> float:
    return float((db.get("OPTIONS") or {}).get("timeout", DEFAULT_BUSY_TIMEOUT_SECONDS))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def count_rows(connection: sqlite3.Connection) -> dict[str, int]:
    """Rows of every table (SQLite's own sqlite_* tables excepted), by table name."""
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        name: connection.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]  # noqa: S608
        for name in names
    }


def dump(db: dict[str, Any], target: Path) -> dict[str, int]:
    """Copy the live database to ``target``; return the copy's row counts."""
    source = sqlite3.connect(db["NAME"], timeout=_timeout(db))
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # pages=-1: the whole database in one step, one snapshot
        # A self-contained file: no -wal/-shm files appear beside it when it is opened.
        copy.execute("PRAGMA journal_mode=DELETE")
        return count_rows(copy)
    finally:
        copy.close()
        source.close()


def _open_checked(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only, after SQLite's integrity check said it is intact."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise BackupError(f"{path.name} is not a readable SQLite database: {exc}") from exc
    if problems != ["ok"]:
        connection.close()
        raise BackupError(f"{path.name} is damaged: {'; '.join(problems[:3])}")
    return connection


def restore_to_scratch(db: dict[str, Any], path: Path) -> dict[str, int]:
    """Restore ``path`` into a temporary database file; return its row counts."""
    source = _open_checked(path)
    try:
        with tempfile.TemporaryDirectory(prefix="taskyard-verify-") as folder:
            scratch = sqlite3.connect(Path(folder) / "scratch.sqlite3")
            try:
                source.backup(scratch)
                return count_rows(scratch)
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"{path.name} could not be restored: {exc}") from exc
            finally:
                scratch.close()
    finally:
        source.close()


def check_archive(path: Path) -> None:
    """BackupError unless ``path`` is an intact SQLite database."""
    _open_checked(path).close()


def restore_into(db: dict[str, Any], path: Path) -> dict[str, int]:
    """Replace the live database's content with ``path`` in one write transaction (the
    backup API's single step): a failure leaves it as it was. Returns its row counts."""
    source = _open_checked(path)
    target = sqlite3.connect(db["NAME"], timeout=_timeout(db))
    try:
        try:
            source.backup(target)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"restoring {path.name} failed: {exc}") from exc
        return count_rows(target)
    finally:
        target.close()
        source.close()

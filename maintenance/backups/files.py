"""Backup files on disk: names, checksums, what a file holds, and the errors of the
backup package."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

# What a file starts with, per database vendor (Django's connection.vendor).
MAGIC = {
    "sqlite": b"SQLite format 3\x00",
    "postgresql": b"PGDMP",  # pg_dump's custom format
}
EXTENSION = {"sqlite": ".sqlite3", "postgresql": ".pgdump"}
MANIFEST_SUFFIX = ".json"
# Hashing reads the file in 1 MiB blocks: flat memory whatever the database's size.
HASH_BLOCK_BYTES = 1024 * 1024


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message says why and
    names the file. Nothing was changed in the live database when it is raised."""


def backup_name(vendor: str, at: dt.datetime) -> str:
    """``taskyard-postgresql-20261201T003000-123456Z.pgdump``: sorts by time, and two
    backups in the same second do not collide."""
    stamp = at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S-%fZ")
    # A vendor without backup support still gets a name: its FAILED row records it.
    return f"taskyard-{vendor}-{stamp}{EXTENSION.get(vendor, '.backup')}"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def vendor_of(path: Path) -> str:
    """The vendor whose backup ``path`` is, from its first bytes; BackupError if none."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    with path.open("rb") as handle:
        head = handle.read(32)
    for vendor, magic in MAGIC.items():
        if head.startswith(magic):
            return vendor
    raise BackupError(
        f"{path.name} is neither a SQLite database nor a pg_dump custom-format archive"
    )

"""PostgreSQL backups through ``pg_dump --format=custom`` and ``pg_restore``.

Row counts and the dump read one snapshot: a REPEATABLE READ transaction exports its
snapshot (``pg_export_snapshot()``), counts every table, and stays open while
``pg_dump --snapshot=…`` dumps exactly what it saw. Verification restores the file into
a scratch database (created from template0, dropped afterwards whatever happens). The
connection comes from settings.DATABASES; the password reaches the client programs
through PGPASSWORD, never their command line.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from maintenance.backups.files import BackupError

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

# Django OPTIONS that are libpq connection parameters, and their environment variables
# (https://www.postgresql.org/docs/current/libpq-envars.html). Other OPTIONS (pool,
# isolation_level, ...) are Django's own and mean nothing to libpq.
LIBPQ_OPTIONS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
# pg_dump/pg_restore of a big database take long; this only stops a hung one.
CLIENT_TIMEOUT_SECONDS = 6 * 3600
# Scratch databases are named so that a leftover one (host crash mid-verification) is
# recognisable: `DROP DATABASE` every taskyard_verify_* that is not in use.
SCRATCH_PREFIX = "taskyard_verify_"
# A restore over the live database waits this long for a table that a forgotten web or
# worker process holds, then fails (and rolls back) instead of hanging behind it.
RESTORE_LOCK_TIMEOUT = "60s"
STDERR_TAIL_CHARS = 600


def _libpq_options(db: dict[str, Any]) -> dict[str, str]:
    options = db.get("OPTIONS") or {}
    return {key: str(options[key]) for key in LIBPQ_OPTIONS if key in options}


def client_env(db: dict[str, Any], name: str | None = None) -> dict[str, str]:
    """The environment of pg_dump/pg_restore for ``db`` (database ``name`` if given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    values = {
        "PGHOST": db.get("HOST") or "",
        "PGPORT": str(db.get("PORT") or ""),
        "PGUSER": db.get("USER") or "",
        "PGPASSWORD": db.get("PASSWORD") or "",
        "PGDATABASE": name or db["NAME"],
    }
    values.update({LIBPQ_OPTIONS[k]: v for k, v in _libpq_options(db).items()})
    env.update({key: value for key, value in values.items() if value})
    return env


def connect(db: dict[str, Any], name: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A connection of its own (not Django's): it has its own transaction and snapshot."""
    import psycopg  # only where PostgreSQL is used: 0.1-0.3 s off every SQLite process start

    params: dict[str, Any] = {
        "dbname": name or db["NAME"],
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        **_libpq_options(db),
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, **kwargs)


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            argv,
            check=False,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",  # pg_restore quotes damaged bytes of the archive
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as exc:
        raise BackupError(
            f"{argv[0]} not found: install the PostgreSQL client programs or set "
            "BACKUP_PG_DUMP / BACKUP_PG_RESTORE"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{what} did not finish in {CLIENT_TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        tail = done.stderr.strip()[-STDERR_TAIL_CHARS:]
        raise BackupError(f"{what} failed (exit {done.returncode}): {tail}")


def count_rows(connection: psycopg.Connection) -> dict[str, int]:
    """Rows of every ordinary table outside the system schemas; ``table`` for the public
    schema, ``schema.table`` otherwise."""
    tables = connection.execute(
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' "
        "ORDER BY 1, 2"
    ).fetchall()
    from psycopg import sql

    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        row = connection.execute(query).fetchone()
        counts[table if schema == "public" else f"{schema}.{table}"] = row[0] if row else 0
    return counts


def dump(db: dict[str, Any], target: Path) -> dict[str, int]:
    """pg_dump the live database to ``target``; return the row counts of its snapshot."""
    with connect(db) as connection:
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = connection.execute("SELECT pg_export_snapshot()").fetchone()
        if row is None:  # pragma: no cover - the function always returns one row
            raise BackupError("pg_export_snapshot() returned nothing")
        counts = count_rows(connection)
        # The exporting transaction stays open until pg_dump is done with the snapshot.
        _run(
            [
                settings.BACKUP_PG_DUMP,
                "--format=custom",
                f"--snapshot={row[0]}",
                f"--file={target}",
                "--no-password",
            ],
            client_env(db),
            "pg_dump",
        )
        connection.rollback()
    return counts


def check_archive(path: Path) -> None:
    """BackupError unless pg_restore can read the archive's table of contents."""
    _run(
        [settings.BACKUP_PG_RESTORE, "--list", str(path)],
        {k: v for k, v in os.environ.items() if not k.startswith("PG")},
        f"reading {path.name}",
    )


def _restore_args(name: str, path: Path) -> list[str]:
    return [
        settings.BACKUP_PG_RESTORE,
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        # One transaction: a damaged archive changes nothing (implies --exit-on-error).
        "--single-transaction",
        "--no-password",
        f"--dbname={name}",
    ]


def restore_to_scratch(db: dict[str, Any], path: Path) -> dict[str, int]:
    """Restore ``path`` into a new scratch database; return its row counts. The scratch
    database is dropped afterwards, also when the restore fails."""
    from psycopg import sql

    check_archive(path)
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    with connect(db, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        try:
            _run(
                [*_restore_args(name, path), str(path)],
                client_env(db, name),
                f"restoring {path.name}",
            )
            with connect(db, name) as scratch:
                return count_rows(scratch)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def restore_into(db: dict[str, Any], path: Path) -> dict[str, int]:
    """Replace the live database's tables with the archive's (``--clean``), in a single
    transaction: a failure leaves the database as it was. Returns its row counts."""
    check_archive(path)
    env = client_env(db)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout={RESTORE_LOCK_TIMEOUT}".strip()
    _run(
        [*_restore_args(db["NAME"], path), "--clean", "--if-exists", str(path)],
        env,
        f"restoring {path.name}",
    )
    with connect(db) as connection:
        return count_rows(connection)

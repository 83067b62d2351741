"""A private, throwaway PostgreSQL 15 cluster for benchmarks, and a probe of what it did.

Issue 18 compares job systems by the work they make PostgreSQL do per job: statements,
commits, WAL syncs, new sessions and the server's CPU. Those figures only mean something
on a cluster nothing else uses, so ``PrivatePostgres`` initdb's one under ``var/bench-pg``
(default durability: ``fsync`` and ``synchronous_commit`` on, as in production), starts it
on a free loopback port with ``pg_stat_statements`` loaded, and removes it on exit.

``Probe.snapshot()`` reads the cumulative counters for one database; ``delta()`` turns two
snapshots into per-job figures. What PostgreSQL 15 needs for the numbers to be exact:

* ``pg_stat_statements`` is updated when each statement ends: no lag.
* ``pg_stat_database`` (commits, sessions) and ``pg_stat_wal`` (WAL syncs) are
  accumulated in each backend and flushed to shared memory when the backend goes idle,
  at most once a second, and by an idle backend only after ``PGSTAT_IDLE_INTERVAL``
  (10 s); always when the backend exits. ``pg_stat_force_next_flush()`` only affects the
  session calling it. So the closing snapshot is taken after the measured clients have
  disconnected (stop the workers first): ``snapshot(wait_for_clients=True)`` waits until
  no other session is connected to the database, then for the counters to stop moving.
* CPU: ``utime+stime`` of the postmaster and of every live child, plus the postmaster's
  ``cutime+cstime`` (the CPU of exited, reaped backends lands there), from ``/proc``.

The probe itself connects to the ``postgres`` database and filters by the measured
database's oid, so its own queries, commits and sessions are not counted.

Usage::

    with PrivatePostgres() as pg:
        pg.create_database("bench")
        probe = pg.probe("bench")
        before = probe.snapshot()
        ...  # run clients against pg.url("bench"), then stop them
        after = probe.snapshot(wait_for_clients=True)
        print(delta(before, after, jobs=5000))
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DIR = BASE_DIR / "var" / "bench-pg"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
# initdb and postgres refuse to run as root; as root we run them as this system user.
SYSTEM_USER = "postgres"
BINDIR_GLOB = "/usr/lib/postgresql/*/bin"

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60
# How long snapshot(wait_for_clients=True) waits for measured clients to disconnect, and
# for the counters to settle (exited backends flush at exit; the WAL writer flushes its
# WAL statistics on its own loop).
CLIENTS_TIMEOUT_SECONDS = 30.0
SETTLE_POLL_SECONDS = 0.1
SETTLE_STABLE_READS = 3

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Appended to postgresql.conf. Durability settings are left at their defaults on purpose.
SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "10000",
    "max_connections": "200",
    "logging_collector": "off",
}


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres: ``pg_config --bindir``, else a glob."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(out.stdout.strip())
    candidates.extend(sorted(glob.glob(BINDIR_GLOB), reverse=True))
    for candidate in candidates:
        path = Path(candidate)
        if all((path / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    raise PostgresNotFoundError(
        "no PostgreSQL server binaries found (tried `pg_config --bindir` and "
        f"{BINDIR_GLOB}); install postgresql-15"
    )


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of one database (WAL syncs and CPU: of the whole cluster)."""

    at: float
    statements: int  # pg_stat_statements calls, nested statements included (track=all)
    toplevel_statements: int  # the ones clients sent
    commits: int
    rollbacks: int
    sessions: int
    wal_syncs: int
    wal_records: int
    cpu_seconds: float


def delta(before: Snapshot, after: Snapshot, jobs: int) -> dict[str, float]:
    """Per-job figures between two snapshots (CPU in microseconds per job)."""
    if jobs <= 0:
        raise ValueError(f"jobs must be positive, got {jobs}")
    return {
        "pg_cpu_us_per_job": (after.cpu_seconds - before.cpu_seconds) * 1e6 / jobs,
        "statements_per_job": (after.statements - before.statements) / jobs,
        "toplevel_statements_per_job": (after.toplevel_statements - before.toplevel_statements)
        / jobs,
        "commits_per_job": (after.commits - before.commits) / jobs,
        "rollbacks_per_job": (after.rollbacks - before.rollbacks) / jobs,
        "wal_syncs_per_job": (after.wal_syncs - before.wal_syncs) / jobs,
        "wal_records_per_job": (after.wal_records - before.wal_records) / jobs,
        "sessions_per_job": (after.sessions - before.sessions) / jobs,
    }


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, state)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


# Offsets into _proc_stat()'s list (proc(5) numbers the fields from 1: ppid is 4).
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 11, 12, 13, 14


def cluster_cpu_seconds(postmaster_pid: int) -> float:
    """CPU used by a cluster so far: postmaster + live children + reaped children."""
    ticks = 0
    # The postmaster's children first: one that exits in between is then counted twice
    # rather than missed, and snapshots are taken when the cluster is quiet anyway.
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _proc_stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[_PPID]) == postmaster_pid:
            ticks += int(fields[_UTIME]) + int(fields[_STIME])
    fields = _proc_stat(postmaster_pid)
    ticks += sum(int(fields[i]) for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
    return ticks / CLK_TCK


class Probe:
    """Reads one database's counters from the ``postgres`` database of the cluster."""

    def __init__(
        self,
        admin_url: str,
        dbname: str,
        postmaster_pid: int | None = None,
        exclude_roles: tuple[str, ...] = (),
    ) -> None:
        """``exclude_roles``: statements run by these roles are not counted (a harness's
        own polling role; its commits and sessions it has to subtract itself)."""
        self.admin_url = admin_url
        self.dbname = dbname
        self.exclude_roles = list(exclude_roles)
        self._conn = psycopg.connect(admin_url, autocommit=True)
        with self._conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cur.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,))
            row = cur.fetchone()
            if row is None:
                raise ValueError(f"database {dbname!r} does not exist")
            self.dboid = int(row[0])
            self.own_pid = int(cur.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        self.postmaster_pid = postmaster_pid or self._find_postmaster_pid()

    def _find_postmaster_pid(self) -> int:
        """The postmaster's pid from data_directory/postmaster.pid (needs file access)."""
        row = self._conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        self._conn.close()

    def connected_clients(self) -> int:
        """Sessions connected to the measured database (other than this probe's)."""
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datid = %s AND pid <> %s",
            (self.dboid, self.own_pid),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def top_statements(self, limit: int = 25) -> list[tuple[int, bool, str]]:
        """(calls, toplevel, query) of the database's most frequent statements since the
        cluster started (excluded roles left out): what a per-job figure is made of."""
        return [
            (int(calls), bool(toplevel), str(query))
            for calls, toplevel, query in self._conn.execute(
                """
                SELECT calls, toplevel, query FROM pg_stat_statements
                WHERE dbid = %s AND userid NOT IN (
                  SELECT oid FROM pg_roles WHERE rolname = ANY(%s))
                ORDER BY calls DESC LIMIT %s
                """,
                (self.dboid, self.exclude_roles, limit),
            ).fetchall()
        ]

    def _read(self) -> Snapshot:
        # Our own pending stats (if any) would not concern the measured database anyway.
        row = self._conn.execute(
            """
            WITH measured AS (
              SELECT calls, toplevel FROM pg_stat_statements
              WHERE dbid = %(oid)s AND userid NOT IN (
                SELECT oid FROM pg_roles WHERE rolname = ANY(%(excluded)s))
            )
            SELECT
              (SELECT coalesce(sum(calls), 0) FROM measured),
              (SELECT coalesce(sum(calls), 0) FROM measured WHERE toplevel),
              d.xact_commit, d.xact_rollback, d.sessions,
              w.wal_sync, w.wal_records
            FROM pg_stat_database d, pg_stat_wal w
            WHERE d.datid = %(oid)s
            """,
            {"oid": self.dboid, "excluded": self.exclude_roles},
        ).fetchone()
        assert row is not None
        # Each read starts a new stats snapshot (the default stats_fetch_consistency=cache
        # keeps values for the rest of a transaction; autocommit ends it).
        return Snapshot(
            at=time.time(),
            statements=int(row[0]),
            toplevel_statements=int(row[1]),
            commits=int(row[2]),
            rollbacks=int(row[3]),
            sessions=int(row[4]),
            wal_syncs=int(row[5]),
            wal_records=int(row[6]),
            cpu_seconds=cluster_cpu_seconds(self.postmaster_pid),
        )

    def snapshot(
        self, *, wait_for_clients: bool = False, timeout: float = CLIENTS_TIMEOUT_SECONDS
    ) -> Snapshot:
        """The counters now.

        With ``wait_for_clients``, first wait until no other session is connected to the
        database (exited backends have flushed their statistics), then until the counters
        read the same a few times in a row (the WAL writer's statistics). Raises
        TimeoutError if clients are still connected after ``timeout`` seconds.
        """
        if not wait_for_clients:
            return self._read()
        deadline = time.monotonic() + timeout
        while (clients := self.connected_clients()) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{clients} session(s) still connected to {self.dbname} after {timeout}s"
                )
            time.sleep(SETTLE_POLL_SECONDS)
        last = self._read()
        stable = 0
        while stable < SETTLE_STABLE_READS and time.monotonic() < deadline:
            time.sleep(SETTLE_POLL_SECONDS)
            current = self._read()
            same = (current.commits, current.sessions, current.wal_syncs) == (
                last.commits,
                last.sessions,
                last.wal_syncs,
            )
            stable = stable + 1 if same else 0
            last = current
        return last


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: initdb + start on enter, stop + delete on exit."""

    def __init__(self, directory: Path | str = DEFAULT_DIR, port: int | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.port = port or free_port()
        self.bindir = find_bindir()
        self.postmaster_pid: int | None = None

    # -- running the server binaries (as the postgres user when we are root) ----------
    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *argv]
        return argv

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            self._as_owner(argv), check=False, capture_output=True, text=True, cwd=self.directory
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> None:
        if self.directory.exists():
            # A cluster left behind by a killed run: stop it if it runs, then start afresh.
            self._stop_quietly()
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            reachable = subprocess.run(
                self._as_owner(["test", "-w", str(self.directory)]), check=False
            )
            if reachable.returncode != 0:
                raise RuntimeError(
                    f"the {SYSTEM_USER} user cannot write {self.directory} (a parent "
                    "directory is not searchable by others?); choose another directory"
                )
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )
        settings = "".join(f"{key} = {value}\n" for key, value in SERVER_SETTINGS.items())
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# bench/pgcluster.py\nport = {self.port}\n{settings}")
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
            ]
        )
        self.postmaster_pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _stop_quietly(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(STOP_TIMEOUT_SECONDS),
                    ]
                )

    def stop(self) -> None:
        """Stop the server and delete the cluster's directory."""
        self._stop_quietly()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.postmaster_pid = None

    def __enter__(self) -> PrivatePostgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- using it ----------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """(Re)create database ``name``; returns its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def probe(self, dbname: str, exclude_roles: tuple[str, ...] = ()) -> Probe:
        return Probe(self.url("postgres"), dbname, self.postmaster_pid, exclude_roles)

    def create_role(self, name: str) -> None:
        """A superuser login role (trust auth), e.g. for a harness's own polling."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE ROLE "{name}" LOGIN SUPERUSER')

    def url_as(self, role: str, dbname: str) -> str:
        return f"postgres://{role}@{HOST}:{self.port}/{dbname}"

    def server_settings(self) -> dict[str, Any]:
        """The durability-relevant settings in force (for the report)."""
        names = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
            ).fetchall()
            version = conn.execute("SHOW server_version").fetchone()
        return {"server_version": version[0] if version else "?", **dict(rows)}


def snapshot_dict(snap: Snapshot) -> dict[str, Any]:
    return asdict(snap)


class ExistingPostgres:
    """A cluster the caller started (e.g. another PrivatePostgres), known by a URL.

    Offers what PrivatePostgres offers once running; the CPU figure needs the postmaster
    to be on this machine and its postmaster.pid readable (as root, or as its owner).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
            raise ValueError(f"not a postgres:// URL with a host: {url!r}")
        self._parts = parts
        self.port = parts.port or 5432
        self.postmaster_pid: int | None = None

    def url(self, dbname: str = "postgres") -> str:
        return urlunsplit(self._parts._replace(path=f"/{dbname}"))

    def url_as(self, role: str, dbname: str) -> str:
        return f"postgres://{role}@{self._parts.hostname}:{self.port}/{dbname}"

    create_database = PrivatePostgres.create_database
    create_role = PrivatePostgres.create_role
    probe = PrivatePostgres.probe
    server_settings = PrivatePostgres.server_settings

"""The measurement every peer goes through, in Taskyard's own environment.

For one peer (bench/peers/systems.py): its pinned virtualenv (created once, then reused),
a fresh database in the private cluster, its schema, N jobs enqueued with no worker
running, then its workers started and timed until its own table says every job is done.

Windows, and why:

* drain jobs/s and worker CPU: from the first job seen done to the last, polling the
  peer's table (every DRAIN_POLL_SECONDS; FIRST_POLL_SECONDS until the first one) from a
  separate role. The workers' start-up (imports, schema checks) is left out, as the lead's
  Celery/Taskyard rows start the clock when the worker answers a ping.
* PostgreSQL figures: from before the workers start until after they have exited.
  PostgreSQL 15 flushes a live session's statistics lazily (bench/pgcluster.py), so the
  closing snapshot needs the workers gone; their start-up and shutdown statements and
  sessions are therefore counted (a few dozen statements in all: noise at N = 5,000).
  The poller's statements are excluded by role, its commits (one a poll) and its one
  session subtracted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import psycopg

from bench.pgcluster import Probe, delta

BASE_DIR = Path(__file__).resolve().parent.parent.parent
PEERS_DIR = BASE_DIR / "var" / "bench-peers"
APPS_DIR = Path(__file__).resolve().parent / "apps"
POLLER_ROLE = "bench_poller"

FIRST_POLL_SECONDS = 0.02
DRAIN_POLL_SECONDS = 0.05
# No worker has finished a job this long after start: a broken setup, not a slow one.
START_TIMEOUT_SECONDS = 90.0
# Waiting for the drain fails when no job has finished for this long.
STALL_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
INSTALL_TIMEOUT_SECONDS = 900
SETUP_TIMEOUT_SECONDS = 300


class Cluster(Protocol):
    """What the harness needs of a cluster (bench.pgcluster.PrivatePostgres has it)."""

    def create_database(self, name: str) -> str: ...
    def create_role(self, name: str) -> None: ...
    def url_as(self, role: str, dbname: str) -> str: ...
    def probe(self, dbname: str, exclude_roles: tuple[str, ...] = ()) -> Probe: ...


class PeerUnavailableError(RuntimeError):
    """The peer could not be installed or set up; the message says why."""


@dataclass(frozen=True)
class Peer:
    """One job system to measure. Commands are argv lists run from apps/ in the peer's
    virtualenv; "{bin}" is its bin directory, "{url}" the database URL, "{i}" the worker's
    index."""

    name: str
    system: str
    python: str
    requirements: tuple[str, ...]
    distribution: str
    setup: tuple[tuple[str, ...], ...]
    enqueue: tuple[str, ...]
    worker: tuple[str, ...]
    worker_processes: int
    remaining_sql: str
    failed_sql: str
    note: str
    env: dict[str, str] = field(default_factory=dict)


def venv_dir(peer: Peer) -> Path:
    return PEERS_DIR / peer.name / "venv"


def ensure_venv(peer: Peer) -> Path:
    """The peer's virtualenv with its pinned requirements, created on first use.

    A stamp file holds the requirement lines it was built from: the same lines next time
    means no pip run at all; different ones rebuild it.
    """
    venv = venv_dir(peer)
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(peer.requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv
    if not Path(peer.python).exists():
        raise PeerUnavailableError(f"{peer.python} not found ({peer.name} needs it)")
    with contextlib.suppress(FileNotFoundError):
        stamp.unlink()
    log = PEERS_DIR / peer.name / "install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [peer.python, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *peer.requirements],
    ]
    with log.open("w") as out:
        for argv in steps:
            result = subprocess.run(
                argv,
                check=False,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )
            if result.returncode != 0:
                raise PeerUnavailableError(
                    f"`{' '.join(argv[:4])} ...` failed (exit {result.returncode}); see {log}"
                )
    stamp.write_text(wanted)
    return venv


def installed_version(venv: Path, distribution: str) -> str:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _argv(template: tuple[str, ...], venv: Path, url: str, index: int = 0) -> list[str]:
    return [part.format(bin=venv / "bin", url=url, i=index) for part in template]


def _env(peer: Peer, venv: Path, url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL"}
    }
    env.update(peer.env)
    env["BENCH_DATABASE_URL"] = url
    env["PYTHONPATH"] = str(APPS_DIR)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_step(argv: list[str], env: dict[str, str], log: Path) -> str:
    result = subprocess.run(
        argv,
        check=False,
        cwd=APPS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_SECONDS,
    )
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise PeerUnavailableError(
            f"`{' '.join(Path(a).name for a in argv[:3])}` failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}; see {log}"
        )
    return result.stdout


def tree_cpu_seconds(roots: list[psutil.Process]) -> float:
    """user+system CPU of the processes and all their live descendants, plus what their
    reaped children used (a recycled pool process's CPU lands in its parent)."""
    seen: dict[int, psutil.Process] = {}
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            seen[root.pid] = root
            for child in root.children(recursive=True):
                seen[child.pid] = child
    total = 0.0
    for proc in seen.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


class Poller:
    """Counts the peer's unfinished jobs from its own role, one autocommit SELECT a poll."""

    def __init__(self, url: str, remaining_sql: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._sql = remaining_sql
        self.commits = 0

    def query_int(self, sql: str) -> int:
        row = self._conn.execute(sql).fetchone()  # type: ignore[arg-type]
        self.commits += 1
        return int(row[0]) if row else 0

    def remaining(self) -> int:
        return self.query_int(self._sql)

    def close(self) -> None:
        self._conn.close()


class Workers:
    """The peer's worker processes, each in its own session (process group)."""

    def __init__(self, argvs: list[list[str]], env: dict[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        for index, argv in enumerate(argvs):
            log = (log_dir / f"worker-{index}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=APPS_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        self.roots = [psutil.Process(proc.pid) for proc in self.procs]

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.args} exited with {proc.returncode}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.roots)

    def stop(self) -> None:
        """SIGTERM (the peers' graceful shutdown), then SIGKILL after a deadline."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
            proc.wait()


def _wait_progress(poller: Poller, workers: Workers, jobs: int) -> tuple[float, int]:
    """Poll until a first job is done; returns (when, remaining then)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        remaining = poller.remaining()
        if remaining < jobs:
            return time.perf_counter(), remaining
        workers.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no job finished {START_TIMEOUT_SECONDS}s after workers started")
        time.sleep(FIRST_POLL_SECONDS)


def _wait_drained(poller: Poller, workers: Workers) -> float:
    """Poll until no job is left; returns when. Fails after a stall."""
    last_remaining = -1
    last_progress = time.monotonic()
    while True:
        remaining = poller.remaining()
        if remaining == 0:
            return time.perf_counter()
        if remaining != last_remaining:
            last_remaining, last_progress = remaining, time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise TimeoutError(f"{remaining} jobs left, none finished for {STALL_TIMEOUT_SECONDS}s")
        workers.check_alive()
        time.sleep(DRAIN_POLL_SECONDS)


def unavailable_row(peer: Peer, jobs: int, reason: str) -> dict[str, Any]:
    return {
        "system": peer.system,
        "version": None,
        "jobs": jobs,
        "enqueue_jobs_per_s": None,
        "drain_jobs_per_s": None,
        "worker_cpu_ms_per_job": None,
        "pg_cpu_us_per_job": None,
        "statements_per_job": None,
        "commits_per_job": None,
        "wal_syncs_per_job": None,
        "sessions_per_job": None,
        "note": f"not measured: {reason}",
    }


@dataclass
class _Prepared:
    venv: Path
    version: str
    dbname: str
    url: str
    env: dict[str, str]
    log_dir: Path


@dataclass
class _Drain:
    first_at: float
    last_at: float
    remaining_then: int
    worker_cpu_seconds: float
    failed: int
    poll_commits: int


def _prepare(peer: Peer, cluster: Cluster) -> _Prepared:
    """Virtualenv, fresh database and the peer's schema."""
    venv = ensure_venv(peer)
    dbname = f"peer_{peer.name.replace('-', '_')}"
    url = cluster.create_database(dbname)
    env = _env(peer, venv, url)
    log_dir = PEERS_DIR / peer.name / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    setup_log = log_dir / "setup.log"
    setup_log.write_text("")
    for step in peer.setup:
        _run_step(_argv(step, venv, url), env, setup_log)
    return _Prepared(
        venv=venv,
        version=installed_version(venv, peer.distribution),
        dbname=dbname,
        url=url,
        env=env,
        log_dir=log_dir,
    )


def _enqueue(peer: Peer, prepared: _Prepared, jobs: int) -> float:
    """Seconds the peer's own enqueue loop took for ``jobs`` jobs (interpreter start-up
    and imports not included)."""
    argv = [*_argv(peer.enqueue, prepared.venv, prepared.url), str(jobs)]
    out = _run_step(argv, prepared.env, prepared.log_dir / "setup.log")
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def _drain(peer: Peer, prepared: _Prepared, poller_url: str, jobs: int) -> _Drain:
    """Start the workers, time the drain, stop them (their sessions closed on return)."""
    poller = Poller(poller_url, peer.remaining_sql)
    workers: Workers | None = None
    try:
        workers = Workers(
            [
                _argv(peer.worker, prepared.venv, prepared.url, i)
                for i in range(peer.worker_processes)
            ],
            prepared.env,
            prepared.log_dir,
        )
        first_at, remaining_then = _wait_progress(poller, workers, jobs)
        cpu_first = workers.cpu_seconds()
        last_at = _wait_drained(poller, workers)
        cpu_last = workers.cpu_seconds()
        failed = poller.query_int(peer.failed_sql)
    finally:
        if workers is not None:
            workers.stop()
        poller.close()
    return _Drain(
        first_at=first_at,
        last_at=last_at,
        remaining_then=remaining_then,
        worker_cpu_seconds=cpu_last - cpu_first,
        failed=failed,
        poll_commits=poller.commits,
    )


def measure(peer: Peer, cluster: Cluster, jobs: int) -> dict[str, Any]:
    """One row for ``peer`` at ``jobs`` jobs (see the module docstring for the windows)."""
    prepared = _prepare(peer, cluster)
    cluster.create_role(POLLER_ROLE)
    poller_url = cluster.url_as(POLLER_ROLE, prepared.dbname)
    probe = cluster.probe(prepared.dbname, exclude_roles=(POLLER_ROLE,))
    try:
        before_enqueue = probe.snapshot(wait_for_clients=True)
        enqueue_seconds = _enqueue(peer, prepared, jobs)
        queued = _count(poller_url, peer.remaining_sql)
        if queued != jobs:
            raise RuntimeError(f"{queued} jobs queued after enqueueing {jobs}")
        before = probe.snapshot(wait_for_clients=True)
        drain = _drain(peer, prepared, poller_url, jobs)
        after = probe.snapshot(wait_for_clients=True)
        _write_statements(probe, prepared.log_dir / "statements.txt", jobs)
    finally:
        probe.close()

    # The jobs finished between the first poll that saw progress and the last one.
    timed_jobs = drain.remaining_then
    drain_seconds = drain.last_at - drain.first_at
    if timed_jobs == 0 or drain_seconds <= 0:
        raise RuntimeError("every job finished before the first poll: use more jobs")
    per = delta(before, after, jobs)
    # The poller's statements are excluded by role; its commits and session are not.
    per["commits_per_job"] -= drain.poll_commits / jobs
    per["sessions_per_job"] -= 1 / jobs
    at_enqueue = delta(before_enqueue, before, jobs)
    # The same for the one count of queued jobs.
    at_enqueue["commits_per_job"] -= 1 / jobs
    at_enqueue["sessions_per_job"] -= 1 / jobs
    notes = [peer.note]
    if drain.failed:
        notes.append(f"{drain.failed} jobs FAILED")
    return {
        "system": peer.system,
        "version": prepared.version,
        "jobs": jobs,
        "enqueue_jobs_per_s": jobs / enqueue_seconds,
        "drain_jobs_per_s": timed_jobs / drain_seconds,
        "worker_cpu_ms_per_job": drain.worker_cpu_seconds * 1000 / timed_jobs,
        "pg_cpu_us_per_job": per["pg_cpu_us_per_job"],
        "statements_per_job": per["statements_per_job"],
        "commits_per_job": per["commits_per_job"],
        "wal_syncs_per_job": per["wal_syncs_per_job"],
        "sessions_per_job": per["sessions_per_job"],
        "toplevel_statements_per_job": per["toplevel_statements_per_job"],
        "rollbacks_per_job": per["rollbacks_per_job"],
        "wal_records_per_job": per["wal_records_per_job"],
        "drain_seconds": drain_seconds,
        **{f"enqueue_{key}": value for key, value in at_enqueue.items()},
        "note": "; ".join(notes),
    }


def _write_statements(probe: Probe, path: Path, jobs: int) -> None:
    """The run's most frequent statements, calls per job first, for reading a row."""
    lines = [
        f"{calls / jobs:8.3f}/job {'top' if toplevel else 'nested'}  {' '.join(query.split())}"
        for calls, toplevel, query in probe.top_statements()
    ]
    path.write_text("\n".join(lines) + "\n")


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def python_of(minor: str) -> str:
    """An interpreter of Python ``minor`` (e.g. "3.12"): this one if it is that version,
    else pyenv's newest of that series, else python<minor> on PATH (may not exist: then
    ensure_venv reports the peer unavailable)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        return sys.executable
    pyenv = sorted((Path.home() / ".pyenv" / "versions").glob(f"{minor}.*"))
    if pyenv:
        return str(pyenv[-1] / "bin" / "python")
    return shutil.which(f"python{minor}") or f"python{minor}"

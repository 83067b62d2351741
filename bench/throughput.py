"""Issue 18's `make bench` table: Taskyard and bare Celery against the PostgreSQL peers.

Everything runs on one private PostgreSQL 15 cluster (bench/pgcluster.py: default
durability, pg_stat_statements) and one private embedded Redis, both started for the run
and removed at exit (``--database-url`` / ``--redis-url`` to use others). On them, one
after the other:

  (a) bare Celery with the project's reliable settings (acks_late, prefetch 1, ...) and
      django-celery-results storing every result, workers keeping their connection
      (WORKER_DB_CONN_MAX_AGE): the no-op ``bench.bare_noop`` (``tracked = False``);
  (b) a Taskyard tracked no-op (Job row, claim under a lease, outcome in the ledger), with
      the relay (``manage.py relay``) running as in production;
  bulk enqueue of (b) with ``queueing.enqueue_many`` (when the branch has it);
  the peers of bench/peers/ (Procrastinate, django-q2, oban-py), each in its own database.

For (a) and (b): N jobs enqueued one ``.delay()`` at a time with no worker running, then
drained by one ``celery worker --concurrency=2 --pool=prefork`` (2 worker processes),
then enqueue-to-start latency at each ``--rates`` value. Every process runs with DEBUG
off, as in production. docs/performance.md says what each figure means and holds the
last full run.

    .venv/bin/python bench/throughput.py                      # the issue's run, ~15 min
    .venv/bin/python bench/throughput.py --jobs 1000 --peers none --latency-seconds 5
    make bench BENCH_ARGS="--peers oban,procrastinate --rates 50,200"

Worker, relay and peer logs, each row's most frequent statements per job
(``statements-<row>.txt``) and the py-spy profile go to var/bench-logs/.

The first part of this module is the environment the other benchmarks share (bench/
lateness.py, outages.py, billing.py...): REDIS_URL or an embedded Redis, a fresh
``taskyard_bench`` database (SQLite by default), workers and relay on config.settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from bench.pgcluster import Probe, Snapshot
    from tests.harness import ManagedProcess, WorkerProcess

BASE_DIR = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path; the project root is what we need.
sys.path[0] = str(BASE_DIR)

from bench.peers.run import cell  # noqa: E402 - one table-cell format for every row

VAR_DIR = BASE_DIR / "var"
LOG_DIR = VAR_DIR / "bench-logs"
REDIS_DIR = VAR_DIR / "bench-redis"
PG_DIR = VAR_DIR / "bench-pg"
SQLITE_PATH = VAR_DIR / "bench.sqlite3"
# BENCH_DATABASE: another name when several checkouts bench on one PostgreSQL server.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "taskyard_bench")
POSTGRES_SCHEMES = ("postgres", "postgresql")

POLL_SECONDS = 0.25
# Waiting for jobs fails when none has finished for this long (a stuck worker), however
# long the whole drain takes.
STALL_TIMEOUT_SECONDS = 120.0
# .delay() calls per mode before anything is timed (connections, imports), then discarded.
WARMUP_JOBS = 20

# Issue 18's run.
DEFAULT_JOBS = 5000
DEFAULT_RATES = "50,200"
DEFAULT_LATENCY_SECONDS = 10.0
WORKER_CONCURRENCY = 2  # one prefork worker, 2 pool processes: "2 worker processes"
# The drain is polled this often (from POLLER_ROLE; its statements are left out by role,
# its commits and session subtracted, as bench/peers/harness.py does for the peers).
DRAIN_POLL_SECONDS = 0.1
POLLER_ROLE = "bench_poller"
# Bulk enqueue: BULK_BATCHES calls of enqueue_many with BULK_SIZE jobs each.
BULK_SIZE = 1000
BULK_BATCHES = 5
TOP_STATEMENTS = 25
PY_SPY_SECONDS = 10
# Frames in at least this share of the samples are the worker's main loop, not news.
PROFILE_COMMON_SHARE = 0.9
PROFILE_WAITING_LEAF = "Condition.wait (threading.py"

# Issue 18's targets.
TARGET_DRAIN_VS_BARE = 2.0
TARGET_CPU_MS_PER_JOB = 4.0
TARGET_P99_MS = {50.0: 10.0, 200.0: 25.0}
TARGET_BULK_JOBS_PER_S = 5000.0
TARGET_ENQUEUE_VS_BARE = 0.6

BARE_SYSTEM = "Celery reliable + django-celery-results, persistent connections"
TRACKED_SYSTEM = "Taskyard tracked job"


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- environment ------------------------------------------------------------------------


def use_bench_redis(stack: contextlib.ExitStack) -> None:
    """REDIS_URL as given, else a private embedded Redis (stopped when ``stack`` closes)."""
    if os.environ.get("REDIS_URL"):
        return
    from devstack import embedded_redis

    server = embedded_redis.start(REDIS_DIR, appendonly=False)
    stack.callback(server.stop)
    if not server.owned:
        raise SystemExit(f"bench: a Redis already runs in {REDIS_DIR} (another bench run?)")
    os.environ["REDIS_URL"] = server.url


def use_bench_database() -> None:
    """Point DATABASE_URL at the bench's own, fresh database; never at the given one."""
    given = os.environ.get("DATABASE_URL", "")
    if not given:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}"  # absolute: sqlite:////...
        return
    parts = urlsplit(given)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise SystemExit("bench: DATABASE_URL must be a PostgreSQL URL, or unset for SQLite")
    import psycopg
    from psycopg import sql

    # Drop and create from the given database (or `postgres` if it is the bench one).
    admin_db = "postgres" if parts.path.strip("/") == BENCH_DATABASE else parts.path.strip("/")
    name = sql.Identifier(BENCH_DATABASE)
    try:
        admin_url = urlunsplit(parts._replace(path=f"/{admin_db}"))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    except psycopg.errors.ObjectInUse:
        raise SystemExit(
            f"bench: database {BENCH_DATABASE} is in use (another bench run, or processes "
            "it left behind); stop them first"
        ) from None
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))


def configure_environment(stack: contextlib.ExitStack) -> None:
    """Set the environment of this process and of the workers it starts, before Django
    settings are imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DEBUG"] = "1"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["PYTHONUNBUFFERED"] = "1"
    use_bench_redis(stack)
    use_bench_database()


# --- child processes --------------------------------------------------------------------
# Started and stopped by the test harness (tests/harness.py), on config.settings and the
# bench's database and Redis instead of the test ones, logging to var/bench-logs/.

BENCH_PROCESS_ENV = {"DJANGO_SETTINGS_MODULE": "config.settings"}


def start_worker(concurrency: int = 2, env: dict[str, str] | None = None) -> WorkerProcess:
    """One ``celery worker`` process with ``concurrency`` prefork pool processes, on the
    default queue, running the bench tasks; ``env`` defaults to BENCH_PROCESS_ENV."""
    from tests import harness

    return harness.start_worker(
        concurrency=concurrency,
        queues=["default"],
        env=env or BENCH_PROCESS_ENV,
        name=f"bench-{uuid.uuid4().hex[:8]}@localhost",
        # Not INFO: a log line per job would cost the worker what we measure.
        loglevel="WARNING",
        extra_args=["--include=bench.tasks"],
        log_dir=LOG_DIR,
    )


def start_relay(
    redis_client, env: dict[str, str] | None = None, *, fresh_epoch: bool = True
) -> ManagedProcess:
    """Start ``manage.py relay``; return after its first tick.

    The first tick of a relay that finds no broker epoch key republishes every queued job
    (it takes the broker for wiped). With ``fresh_epoch`` the key is deleted and the relay
    is ready once it has written it again, so jobs are enqueued only after that tick.
    Without, the key is left alone (no republish of jobs already queued) and the relay is
    ready at its first heartbeat, written after each full tick."""
    from queueing.registry import RELAY_KEY
    from queueing.relay.loop import EPOCH_KEY
    from tests import harness

    ready_key = EPOCH_KEY if fresh_epoch else RELAY_KEY
    redis_client.delete(ready_key)
    return harness.start_relay(
        env or BENCH_PROCESS_ENV,
        ready=lambda: redis_client.exists(ready_key),
        log_dir=LOG_DIR,
    )


def check_alive(child: ManagedProcess) -> None:
    """Stop the benchmark if ``child`` died."""
    code = child.process.poll()
    if code is not None:
        raise SystemExit(f"bench: {child.name} exited with code {code}; see {child.log_path}")


def cpu_seconds(worker: ManagedProcess) -> float:
    """User+system CPU so far of the worker's main process and its pool (live or reaped)."""
    import psutil

    main = psutil.Process(worker.pid)
    total = 0.0
    for process in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


# --- one mode ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """A task to measure, and where its finished jobs are in the database."""

    label: str
    task: object
    succeeded: object  # QuerySet of the finished jobs
    finished_field: str  # their finish time
    result_field: str  # the task's return value, [sent_at, started_at]
    system: str = ""  # its name in issue 18's table
    key: str = ""  # in file names
    tracked: bool = False

    def done(self) -> int:
        return self.succeeded.count()

    def last_finish(self) -> float:
        """Epoch seconds of the latest finish."""
        from django.db.models import Max

        return self.succeeded.aggregate(at=Max(self.finished_field))["at"].timestamp()

    def timestamps(self) -> list[list[float]]:
        values = self.succeeded.values_list(self.result_field, flat=True)
        # The results table keeps the value JSON-encoded; Job.result is a JSONField.
        return [json.loads(value) if isinstance(value, str) else value for value in values]


def bare_mode() -> Mode:
    from celery import states
    from django_celery_results.models import TaskResult

    from bench.tasks import bare_noop

    succeeded = TaskResult.objects.filter(status=states.SUCCESS)
    return Mode(
        "(a) bare Celery + results",
        bare_noop,
        succeeded,
        "date_done",
        "result",
        system=BARE_SYSTEM,
        key="bare",
    )


def tracked_mode() -> Mode:
    from bench.tasks import tracked_noop
    from queueing.models import Job, JobStatus

    succeeded = Job.objects.filter(status=JobStatus.SUCCEEDED)
    return Mode(
        "(b) Taskyard tracked",
        tracked_noop,
        succeeded,
        "finished_at",
        "result",
        system=TRACKED_SYSTEM,
        key="tracked",
        tracked=True,
    )


def reset(app) -> None:
    """Empty the broker queues and the job and result tables, so that each phase counts
    only its own jobs."""
    from django.core.management.color import no_style
    from django.db import connection
    from django_celery_results.models import TaskResult

    from queueing.models import DeadLetter, Job, JobAttempt

    app.control.purge()
    tables = [model._meta.db_table for model in (TaskResult, DeadLetter, JobAttempt, Job)]
    statements = connection.ops.sql_flush(no_style(), tables, allow_cascade=True)
    connection.ops.execute_sql_flush(statements)


def wait_for_jobs(mode: Mode, count: int, worker: ManagedProcess) -> None:
    """Poll until ``count`` jobs have finished; fail if the worker dies or stalls."""
    done, last_progress = mode.done(), time.monotonic()
    while done < count:
        time.sleep(POLL_SECONDS)
        check_alive(worker)
        now_done = mode.done()
        if now_done > done:
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise SystemExit(
                f"bench: {mode.label}: stuck at {done}/{count} jobs for "
                f"{STALL_TIMEOUT_SECONDS:.0f} s; see {worker.log_path}"
            )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def describe_database() -> str:
    from django.db import connection

    query = (
        "SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()"
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        version = cursor.fetchone()[0]
    return f"{connection.display_name} {version} ({connection.settings_dict['NAME']})"


def prepare(stack: contextlib.ExitStack):
    """The bench's environment, Django set up, the bench database migrated; returns a
    Redis client (closed when ``stack`` unwinds)."""
    configure_environment(stack)
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    say(f"migrating {os.environ['DATABASE_URL']}")
    call_command("migrate", verbosity=0, interactive=False)
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    stack.callback(redis_client.close)
    return redis_client


def run_with_cleanup(run_bench: Callable, args: argparse.Namespace) -> None:
    """Run ``run_bench(args, stack)``; whatever it started on ``stack`` (Redis, workers,
    the relay) is stopped on the way out, also on Ctrl-C or SIGTERM (a timeout, a
    cancelled CI job), which unwinds like Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with contextlib.ExitStack() as stack:
            run_bench(args, stack)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)


# === Issue 18's table ===================================================================
# --- environment: a private cluster and Redis, DEBUG off --------------------------------

# Production runs with DEBUG off: with it on, Django records every query in every process
# (time and memory per statement), which is not what a job costs. SECRET_KEY is set in
# prepare_table (DEBUG off requires one).
TABLE_PROCESS_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "0",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Context:
    """What every phase uses: the cluster and its probe, Redis, the poller's URL."""

    args: argparse.Namespace
    cluster: Any  # bench.pgcluster.PrivatePostgres or ExistingPostgres
    probe: Probe
    redis: Any  # redis.Redis
    poller_url: str
    app: Any  # the Celery app
    server: dict[str, Any] = field(default_factory=dict)
    load_before: str = ""


def start_redis(stack: contextlib.ExitStack, url: str | None) -> str:
    """``url`` as given, else a private embedded Redis (stopped when ``stack`` closes).
    REDIS_URL is ignored: a shared Redis would mix other processes' work into its CPU."""
    if url:
        return url
    from devstack import embedded_redis

    server = embedded_redis.start(REDIS_DIR, appendonly=False)
    stack.callback(server.stop)
    if not server.owned:
        raise SystemExit(f"bench: a Redis already runs in {REDIS_DIR} (another bench run?)")
    return server.url


def prepare_table(stack: contextlib.ExitStack, args: argparse.Namespace) -> Context:
    """Redis, the cluster, its ``taskyard_bench`` database migrated, Django set up on
    them with DEBUG off, and the probe."""
    from bench.pgcluster import ExistingPostgres, PrivatePostgres

    redis_url = start_redis(stack, args.redis_url)
    if args.database_url:
        cluster: Any = ExistingPostgres(args.database_url)
    else:
        say(f"starting a private PostgreSQL under {args.pg_dir}")
        cluster = stack.enter_context(PrivatePostgres(args.pg_dir))
    database_url = cluster.create_database(BENCH_DATABASE)
    cluster.create_role(POLLER_ROLE)

    TABLE_PROCESS_ENV["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
    os.environ.update(TABLE_PROCESS_ENV)
    os.environ.update(PYTHONUNBUFFERED="1", REDIS_URL=redis_url, DATABASE_URL=database_url)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    import bench.tasks  # noqa: F401 - registers the bench tasks in this process
    from config.celery import app

    say(f"migrating {database_url}")
    call_command("migrate", verbosity=0, interactive=False)
    redis_client = redis.Redis.from_url(redis_url)
    stack.callback(redis_client.close)
    probe = cluster.probe(BENCH_DATABASE, exclude_roles=(POLLER_ROLE,))
    stack.callback(probe.close)
    return Context(
        args=args,
        cluster=cluster,
        probe=probe,
        redis=redis_client,
        poller_url=cluster.url_as(POLLER_ROLE, BENCH_DATABASE),
        app=app,
        server=cluster.server_settings(),
    )


def disconnect() -> None:
    """Close this process's database connection: a snapshot that waits for clients needs
    the database to itself, and a backend's statistics are flushed when it exits."""
    from django.db import connections

    connections.close_all()


# --- CPU of every process involved ------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU so far of a process and its descendants (live or reaped)."""
    import psutil

    main = psutil.Process(pid)
    total = 0.0
    for process in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def own_process_cpu_seconds(pid: int) -> float:
    """User+system CPU so far of one process alone (a worker's main process)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def own_cpu_seconds() -> float:
    """This process's CPU (the producer, while it enqueues)."""
    times = os.times()
    return times.user + times.system


def redis_cpu_seconds(redis_client) -> float:
    """The Redis server's CPU so far (INFO cpu: its getrusage, all its threads)."""
    info = redis_client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuMeter:
    """CPU seconds of named processes between ``start()`` and ``stop()``."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources
        self._start: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {name: read() for name, read in self.sources.items()}

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        end = self._read()
        return {name: end[name] - self._start[name] for name in end}


# --- the database, seen from the bench --------------------------------------------------


class Poller:
    """Reads the drain's progress as POLLER_ROLE, one autocommit SELECT per read."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)
        self.commits = 0

    def value(self, query: tuple[str, tuple]) -> Any:
        sql, params = query
        row = self._conn.execute(sql, params).fetchone()  # type: ignore[call-overload]
        self.commits += 1
        return row[0] if row else None

    def close(self) -> None:
        self._conn.close()


def done_query(mode: Mode) -> tuple[str, tuple]:
    """SQL counting the mode's finished jobs (Django's own SQL for ``mode.succeeded``)."""
    sql, params = mode.succeeded.values("pk").query.sql_with_params()  # type: ignore[attr-defined]
    return f"SELECT count(*) FROM ({sql}) AS done", params  # noqa: S608 - Django's SQL


def last_finish_query(mode: Mode) -> tuple[str, tuple]:
    """SQL for the epoch seconds of the latest finish."""
    values = mode.succeeded.values(mode.finished_field)  # type: ignore[attr-defined]
    sql, params = values.query.sql_with_params()
    return (
        f"SELECT extract(epoch FROM max({mode.finished_field})) FROM ({sql}) AS done",  # noqa: S608
        params,
    )


def reset_statements(ctx: Context) -> None:
    """Start pg_stat_statements afresh, so a row's statements file holds only its own."""
    import psycopg

    with psycopg.connect(ctx.cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def write_statements(ctx: Context, path: Path, jobs: int) -> None:
    """The database's most frequent statements since the last reset, calls per job."""
    lines = [
        f"{calls / jobs:8.3f}/job {'top' if toplevel else 'nested'}  {' '.join(query.split())}"
        for calls, toplevel, query in ctx.probe.top_statements(TOP_STATEMENTS)
    ]
    path.write_text("\n".join(lines) + "\n")


def pg_figures(
    before: Snapshot, after: Snapshot, jobs: int, poller: Poller | None = None
) -> dict[str, float]:
    """Per-job PostgreSQL figures; the poller's own commits and session taken out."""
    from bench.pgcluster import delta

    per = delta(before, after, jobs)
    if poller is not None:
        per["commits_per_job"] -= poller.commits / jobs
        per["sessions_per_job"] -= 1 / jobs
    return per


def wait_drained(mode: Mode, count: int, poller: Poller, worker: ManagedProcess) -> None:
    """Poll until ``count`` jobs have finished; fail if the worker dies or stalls."""
    query = done_query(mode)
    done, last_progress = poller.value(query), time.monotonic()
    while done < count:
        time.sleep(DRAIN_POLL_SECONDS)
        check_alive(worker)
        now_done = poller.value(query)
        if now_done > done:
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise SystemExit(
                f"bench: {mode.system}: stuck at {done}/{count} jobs for "
                f"{STALL_TIMEOUT_SECONDS:.0f} s; see {worker.log_path}"
            )


# --- one row: enqueue, drain, latency ---------------------------------------------------


def enqueue_phase(mode: Mode, ctx: Context, row: dict[str, Any]) -> Snapshot:
    """N ``.delay()`` calls from this process, outside any transaction, no worker running
    (the relay running for tracked jobs, as in production). Returns the closing snapshot
    (the drain's opening one)."""
    jobs = ctx.args.jobs
    say(f"{mode.system}: warming up")
    for _ in range(WARMUP_JOBS):
        mode.task.delay(0.0)  # type: ignore[attr-defined]
    reset(ctx.app)
    disconnect()
    reset_statements(ctx)
    before = ctx.probe.snapshot(wait_for_clients=True)
    relay = start_relay(ctx.redis, TABLE_PROCESS_ENV, fresh_epoch=False) if mode.tracked else None
    sources = {"producer": own_cpu_seconds, "redis": lambda: redis_cpu_seconds(ctx.redis)}
    if relay is not None:
        sources["relay"] = lambda: tree_cpu_seconds(relay.pid)
    meter = CpuMeter(sources)

    say(f"{mode.system}: enqueueing {jobs} jobs, no worker running")
    profile = start_profile(ctx, "producer", os.getpid()) if mode.tracked else None
    try:
        meter.start()
        started = time.perf_counter()
        for _ in range(jobs):
            mode.task.delay(0.0)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - started
        row["cpu_enqueue"] = meter.stop()
        if profile is not None:
            profile.finish()
    finally:
        if relay is not None:
            relay.stop()
    disconnect()
    after = ctx.probe.snapshot(wait_for_clients=True)
    row["enqueue_jobs_per_s"] = jobs / seconds
    row.update({f"enqueue_{key}": value for key, value in pg_figures(before, after, jobs).items()})
    return after


def drain_phase(mode: Mode, ctx: Context, row: dict[str, Any], before: Snapshot) -> None:
    """One worker (prefork, concurrency 2) drains the N jobs; the clock runs from its
    ping answer to the last job's finish time in the database. The closing snapshot is
    taken after the worker and the relay have exited (bench/pgcluster.py: statistics)."""
    jobs = ctx.args.jobs
    say(f"{mode.system}: draining {jobs} jobs with one worker (prefork, concurrency 2)")
    poller = Poller(ctx.poller_url)
    relay = worker = None
    try:
        if mode.tracked:
            relay = start_relay(ctx.redis, TABLE_PROCESS_ENV, fresh_epoch=False)
        worker = start_worker(WORKER_CONCURRENCY, TABLE_PROCESS_ENV)
        sources = {
            "workers": lambda: tree_cpu_seconds(worker.pid),
            "worker_main": lambda: own_process_cpu_seconds(worker.pid),
            "redis": lambda: redis_cpu_seconds(ctx.redis),
        }
        if relay is not None:
            sources["relay"] = lambda: tree_cpu_seconds(relay.pid)
        meter = CpuMeter(sources)
        # A few jobs may finish between the worker's start and its ping answer: they are
        # left out of the timing.
        meter.start()
        done_before, clock = poller.value(done_query(mode)), time.time()
        profiles = []
        if mode.tracked:
            profiles = [
                start_profile(ctx, "worker-pool", pool_process(worker)),
                start_profile(ctx, "worker-main", worker.pid),
            ]
        wait_drained(mode, jobs, poller, worker)
        cpu = meter.stop()
        last_finish = float(poller.value(last_finish_query(mode)))
        for profile in profiles:
            if profile is not None:
                profile.finish()
    finally:
        if worker is not None:
            worker.stop()
        if relay is not None:
            relay.stop()
        poller.close()
    after = ctx.probe.snapshot(wait_for_clients=True)
    write_statements(ctx, LOG_DIR / f"statements-{mode.key}.txt", jobs)

    timed = jobs - done_before
    if timed < 1:
        raise SystemExit("bench: all jobs ran before the worker answered; raise --jobs")
    row["drain_jobs_per_s"] = timed / (last_finish - clock)
    row["worker_cpu_ms_per_job"] = cpu["workers"] * 1000 / timed
    row["worker_main_cpu_ms_per_job"] = cpu.pop("worker_main") * 1000 / timed
    # Scaled to all N jobs, for the CPU per job summed over every process.
    row["cpu_drain"] = {name: value * jobs / timed for name, value in cpu.items()}
    row.update(pg_figures(before, after, jobs, poller))


def latency_phase(mode: Mode, ctx: Context, row: dict[str, Any]) -> None:
    """Jobs sent at a steady rate for ``--latency-seconds``, once per ``--rates`` value,
    the worker (and the relay) running and idle: time.time() before ``.delay()`` to
    time.time() at the start of the task body (both returned by the task)."""
    row["latency"] = {}
    relay = worker = None
    try:
        if mode.tracked:
            relay = start_relay(ctx.redis, TABLE_PROCESS_ENV, fresh_epoch=False)
        worker = start_worker(WORKER_CONCURRENCY, TABLE_PROCESS_ENV)
        for rate in ctx.args.rates:
            reset(ctx.app)
            count = max(1, round(rate * ctx.args.latency_seconds))
            say(f"{mode.system}: {count} jobs at {rate:g} jobs/s for enqueue-to-start")
            interval = 1.0 / rate
            begin = time.perf_counter()
            for n in range(count):  # the n-th call at begin + n * interval
                pause = begin + n * interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                mode.task.delay(time.time())  # type: ignore[attr-defined]
            sending = time.perf_counter() - begin
            wait_for_jobs(mode, count, worker)
            latencies = sorted(start - sent for sent, start in mode.timestamps())
            row["latency"][rate] = {
                "sent_jobs_per_s": count / sending,
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": latencies[-1] * 1000,
            }
    finally:
        if worker is not None:
            worker.stop()
        if relay is not None:
            relay.stop()
    reset(ctx.app)


def measure_row(mode: Mode, ctx: Context) -> dict[str, Any]:
    """Issue 18's figures for (a) or (b), plus the enqueue, CPU and latency ones."""
    jobs = ctx.args.jobs
    row: dict[str, Any] = {"system": mode.system, "jobs": jobs}
    before_drain = enqueue_phase(mode, ctx, row)
    drain_phase(mode, ctx, row, before_drain)
    latency_phase(mode, ctx, row)
    enqueue, drain = row.pop("cpu_enqueue"), row.pop("cpu_drain")
    seconds = {
        "producer": enqueue["producer"],
        "redis": enqueue["redis"] + drain["redis"],
        "relay": enqueue.get("relay", 0.0) + drain.get("relay", 0.0),
        "workers": drain["workers"],
    }
    cpu = {name: value * 1000 / jobs for name, value in seconds.items()}
    cpu["postgres"] = (row["enqueue_pg_cpu_us_per_job"] + row["pg_cpu_us_per_job"]) / 1000
    cpu["total"] = sum(cpu.values())
    row["cpu_ms_per_job"] = cpu
    say(f"{mode.system}: {json.dumps(row)}")
    return row


# --- bulk enqueue -----------------------------------------------------------------------


def bulk_phase(ctx: Context) -> dict[str, Any]:
    """BULK_BATCHES calls of ``queueing.enqueue_many`` of BULK_SIZE tracked jobs each, no
    worker running: jobs/s, what reached the ledger and the broker, PostgreSQL per job."""
    try:
        from queueing import enqueue_many  # type: ignore[attr-defined]
    except ImportError:
        return {"available": False}
    from bench.tasks import tracked_noop
    from queueing.models import Job

    enqueue_many(tracked_noop, [(0.0,)] * WARMUP_JOBS)
    reset(ctx.app)
    disconnect()
    before = ctx.probe.snapshot(wait_for_clients=True)
    jobs = BULK_SIZE * BULK_BATCHES
    batches = [[(0.0,)] * BULK_SIZE for _ in range(BULK_BATCHES)]
    say(f"bulk enqueue: {BULK_BATCHES} x enqueue_many of {BULK_SIZE} tracked jobs")
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    for args_list in batches:
        enqueue_many(tracked_noop, args_list)
    seconds = time.perf_counter() - started
    producer_cpu = own_cpu_seconds() - cpu_before
    stored = Job.objects.count()
    with ctx.app.connection_for_read() as connection:
        published = connection.default_channel.queue_declare("default", passive=True).message_count
    disconnect()
    after = ctx.probe.snapshot(wait_for_clients=True)
    reset(ctx.app)
    return {
        "available": True,
        "jobs": jobs,
        "jobs_per_s": jobs / seconds,
        "stored": stored,
        "published": published,
        "producer_cpu_ms_per_job": producer_cpu * 1000 / jobs,
        **pg_figures(before, after, jobs),
    }


# --- py-spy -----------------------------------------------------------------------------


@dataclass
class Profile:
    """A ``py-spy record`` of one process for PY_SPY_SECONDS, running in the background."""

    name: str
    process: subprocess.Popen[bytes]
    output: Path

    def finish(self) -> None:
        """Wait for the recording; write its summary beside it."""
        try:
            self.process.wait(timeout=PY_SPY_SECONDS * 6)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait()
        if self.output.exists():
            summary = LOG_DIR / f"py-spy-{self.name}-summary.txt"
            summary.write_text(summarize_profile(self.output, self.name))
            say(f"py-spy: {summary}")


def start_profile(ctx: Context, name: str, pid: int) -> Profile | None:
    """With ``--py-spy``, sample process ``pid`` for PY_SPY_SECONDS; the collapsed stacks
    go to var/bench-logs/py-spy-<name>.txt."""
    if not ctx.args.py_spy:
        return None
    output = LOG_DIR / f"py-spy-{name}.txt"
    argv = [
        *(ctx.args.py_spy, "record", "--pid", str(pid)),
        *("--duration", str(PY_SPY_SECONDS), "--format", "raw", "--output", str(output)),
    ]
    say(f"py-spy: {' '.join(argv)}")
    with (LOG_DIR / f"py-spy-{name}.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return Profile(name, process, output)


def pool_process(worker: WorkerProcess) -> int:
    """The pid of the worker's first pool process."""
    import psutil

    return psutil.Process(worker.pid).children()[0].pid


def summarize_profile(raw: Path, name: str, top: int = 15) -> str:
    """py-spy's collapsed stacks as text: the frames most samples were in (inclusive,
    leaving out the main loop's ancestors, common to nearly every sample), and the leaf
    frames. Samples of threads asleep in threading's waits are left out."""
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(PROFILE_WAITING_LEAF):
            continue  # a helper thread asleep (the lease keeper), not work
        total += count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
    if not total:
        return "no samples\n"
    common = PROFILE_COMMON_SHARE * max(inclusive.values())

    def lines(counts: dict[str, int]) -> list[str]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])
        return [f"  {n * 100 / total:5.1f}%  {frame}" for frame, n in ranked if n < common][:top]

    return (
        "\n".join(
            [
                f"{total} samples of the {name} (py-spy; threads asleep left out)",
                "inclusive (the main loop's common ancestors left out):",
                *lines(inclusive),
                "self (the frame running when sampled):",
                *lines(leaves),
            ]
        )
        + "\n"
    )


# --- report -----------------------------------------------------------------------------


def counts(row: dict[str, Any], prefix: str = "") -> str:
    """'statements / commits / WAL syncs' per job."""
    keys = ("statements_per_job", "commits_per_job", "wal_syncs_per_job")
    if row.get(prefix + keys[0]) is None:
        return "-"
    return " / ".join(cell(row[prefix + key]) for key in keys)


def markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(line) + " |" for line in lines)
    return "\n".join(out)


def drain_table(rows: list[dict[str, Any]]) -> str:
    """Issue 18's table: one row per system, the drain's figures."""
    header = [
        "system",
        "drain jobs/s",
        "worker CPU ms/job",
        "PostgreSQL CPU µs/job",
        "statements / commits / WAL syncs per job",
        "new DB sessions per job",
    ]
    lines = []
    for row in rows:
        system = row["system"]
        if row.get("drain_jobs_per_s") is None:
            system += f" — {row.get('note', 'not measured')}"
        lines.append(
            [
                system,
                cell(row.get("drain_jobs_per_s")),
                cell(row.get("worker_cpu_ms_per_job")),
                cell(row.get("pg_cpu_us_per_job")),
                counts(row),
                cell(row.get("sessions_per_job")),
            ]
        )
    return markdown(header, lines)


def enqueue_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "system",
        "enqueue jobs/s",
        "PostgreSQL CPU µs/job",
        "statements / commits / WAL syncs per job",
        "new DB sessions per job",
    ]
    lines = [
        [
            row["system"],
            cell(row.get("enqueue_jobs_per_s")),
            cell(row.get("enqueue_pg_cpu_us_per_job")),
            counts(row, "enqueue_"),
            cell(row.get("enqueue_sessions_per_job")),
        ]
        for row in rows
        if row.get("enqueue_jobs_per_s") is not None
    ]
    return markdown(header, lines)


CPU_PARTS = ("producer", "redis", "relay", "postgres", "workers", "total")


def cpu_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "system",
        *(f"{part} ms/job" for part in CPU_PARTS),
        "of the workers': main process ms/job",
    ]
    lines = [
        [
            row["system"],
            *(cell(row["cpu_ms_per_job"][part]) for part in CPU_PARTS),
            cell(row["worker_main_cpu_ms_per_job"]),
        ]
        for row in rows
    ]
    return markdown(header, lines)


def latency_table(rows: list[dict[str, Any]], rates: list[float]) -> str:
    header = ["system", "rate asked jobs/s", "rate sent jobs/s", "p50 ms", "p99 ms", "max ms"]
    lines = [
        [
            row["system"],
            f"{rate:g}",
            cell(row["latency"][rate]["sent_jobs_per_s"]),
            cell(row["latency"][rate]["p50_ms"]),
            cell(row["latency"][rate]["p99_ms"]),
            cell(row["latency"][rate]["max_ms"]),
        ]
        for row in rows
        for rate in rates
    ]
    return markdown(header, lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ratios_and_targets(
    bare: dict[str, Any],
    tracked: dict[str, Any],
    peers: list[dict[str, Any]],
    bulk: dict[str, Any],
    rates: list[float],
) -> list[str]:
    """Issue 18's ratios and targets, one line each, ending in met / NOT met."""
    lines = []
    ratio = tracked["drain_jobs_per_s"] / bare["drain_jobs_per_s"]
    lines.append(
        f"drain, tracked / bare Celery + results: {ratio:.2f}x "
        f"(target >= {TARGET_DRAIN_VS_BARE:g}x): {verdict(ratio >= TARGET_DRAIN_VS_BARE)}"
    )
    measured = [row for row in peers if row.get("drain_jobs_per_s") is not None]
    if measured:
        fastest = max(measured, key=lambda row: row["drain_jobs_per_s"])
        ratio = tracked["drain_jobs_per_s"] / fastest["drain_jobs_per_s"]
        lines.append(
            f"drain, tracked / fastest durable peer ({fastest['system']}): {ratio:.2f}x "
            f"(target > 1x): {verdict(ratio > 1)}"
        )
    else:
        lines.append("drain, tracked / fastest durable peer: no peer measured (not checked)")
    cpu = tracked["cpu_ms_per_job"]["total"]
    lines.append(
        f"tracked CPU per job, every process: {cpu:.2f} ms "
        f"(target <= {TARGET_CPU_MS_PER_JOB:g} ms): {verdict(cpu <= TARGET_CPU_MS_PER_JOB)}"
    )
    for rate in sorted(set(rates) | set(TARGET_P99_MS)):
        goal = TARGET_P99_MS.get(rate)
        if rate not in rates:
            lines.append(f"tracked p99 enqueue-to-start at {rate:g} jobs/s: not measured")
            continue
        p99 = tracked["latency"][rate]["p99_ms"]
        if goal is None:
            lines.append(f"tracked p99 enqueue-to-start at {rate:g} jobs/s: {p99:.1f} ms")
        else:
            lines.append(
                f"tracked p99 enqueue-to-start at {rate:g} jobs/s: {p99:.1f} ms "
                f"(target <= {goal:g} ms): {verdict(p99 <= goal)}"
            )
    if bulk.get("available"):
        lines.append(
            f"bulk enqueue: {bulk['jobs_per_s']:,.0f} jobs/s "
            f"(target >= {TARGET_BULK_JOBS_PER_S:,.0f}): "
            f"{verdict(bulk['jobs_per_s'] >= TARGET_BULK_JOBS_PER_S)}"
        )
    else:
        lines.append("bulk enqueue: not available (no queueing.enqueue_many on this branch)")
    ratio = tracked["enqueue_jobs_per_s"] / bare["enqueue_jobs_per_s"]
    lines.append(
        f"single-job enqueue, tracked / bare Celery publish: {ratio:.2f}x "
        f"(target >= {TARGET_ENQUEUE_VS_BARE:g}x): {verdict(ratio >= TARGET_ENQUEUE_VS_BARE)}"
    )
    return lines


def notes(rows: list[dict[str, Any]], rates: list[float]) -> list[str]:
    """When a figure does not measure what it is meant to."""
    lines = []
    for row in rows:
        for phase, key in (("drain", "sessions_per_job"), ("enqueue", "enqueue_sessions_per_job")):
            if row[key] > 0.01:
                lines.append(f"{row['system']}: {row[key]:.3f} new DB sessions per job ({phase})")
        for rate in rates:
            sent = row["latency"][rate]["sent_jobs_per_s"]
            if sent < 0.95 * rate:
                lines.append(f"{row['system']}: enqueue kept up with {sent:.0f} of {rate:g} jobs/s")
            if row["drain_jobs_per_s"] < rate:
                lines.append(
                    f"{row['system']} drains {row['drain_jobs_per_s']:.0f} jobs/s, below "
                    f"{rate:g} jobs/s: its latency at that rate is mostly backlog"
                )
    return lines


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(
    ctx: Context,
    bare: dict[str, Any],
    tracked: dict[str, Any],
    peers: list[dict[str, Any]],
    bulk: dict[str, Any],
    minutes: float,
) -> None:
    import celery
    import django

    args = ctx.args
    server = ctx.server
    redis_version = ctx.redis.info("server")["redis_version"]
    print()
    print(f"## make bench: N = {args.jobs} no-op jobs, 2 worker processes per system")
    print()
    print(f"- command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs; load average (1/5/15 min) "
        f"{ctx.load_before} at the start, {load_average()} at the end; {minutes:.1f} min"
    )
    print(
        f"- PostgreSQL {server.get('server_version')}, private cluster (fsync="
        f"{server.get('fsync')}, synchronous_commit={server.get('synchronous_commit')}, "
        f"wal_sync_method={server.get('wal_sync_method')}); Redis {redis_version}, private"
    )
    print(
        f"- Python {platform.python_version()}, Django {django.get_version()}, "
        f"Celery {celery.__version__}; DEBUG off in every Taskyard/Celery process"
    )
    print()
    print("Drain (claim, run, completion; the PostgreSQL figures are the drain's):")
    print()
    print(drain_table([bare, *peers, tracked]))
    print()
    print("Ratios and targets:")
    print()
    for line in ratios_and_targets(bare, tracked, peers, bulk, args.rates):
        print(f"- {line}")
    print()
    print("Enqueue (one call per job, outside any transaction, no worker running):")
    print()
    print(enqueue_table([bare, *peers, tracked]))
    print()
    print("CPU per job summed over every process, enqueue + drain:")
    print()
    print(cpu_table([bare, tracked]))
    print()
    print(f"Enqueue-to-start at a steady rate, {args.latency_seconds:g} s per rate:")
    print()
    print(latency_table([bare, tracked], args.rates))
    print()
    if bulk.get("available"):
        print(
            f"Bulk enqueue, {BULK_BATCHES} x enqueue_many of {BULK_SIZE}: "
            f"{bulk['jobs_per_s']:,.0f} jobs/s; {bulk['stored']} jobs stored, "
            f"{bulk['published']} messages waiting in the broker; per job "
            f"{counts(bulk)} statements / commits / WAL syncs, PostgreSQL "
            f"{bulk['pg_cpu_us_per_job']:.0f} µs, producer {bulk['producer_cpu_ms_per_job']:.3f} ms"
        )
    else:
        print("Bulk enqueue: not available (no queueing.enqueue_many on this branch)")
    for line in notes([bare, tracked], args.rates):
        print(f"- note: {line}")


# --- main -------------------------------------------------------------------------------


def _rates(value: str) -> list[float]:
    try:
        rates = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates like 50,200: {value!r}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive jobs/s, got {value!r}")
    return rates


def _peers(value: str) -> list[str]:
    """``all``, ``none`` or a comma-separated list checked by bench/peers/run.py."""
    from bench.peers.run import peer_list
    from bench.peers.systems import PEERS

    if value == "all":
        return list(PEERS)
    if value == "none":
        return []
    return peer_list(value)


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=_positive_int, default=DEFAULT_JOBS, help="N per row")
    parser.add_argument(
        "--rates",
        type=_rates,
        default=_rates(DEFAULT_RATES),
        help=f"jobs/s of the latency runs (default {DEFAULT_RATES})",
    )
    parser.add_argument(
        "--latency-seconds",
        type=_positive_float,
        default=DEFAULT_LATENCY_SECONDS,
        help=f"length of each latency run (default {DEFAULT_LATENCY_SECONDS:g})",
    )
    parser.add_argument(
        "--peers",
        type=_peers,
        default=None,
        help="all (default), none, or a list such as oban,procrastinate",
    )
    parser.add_argument("--pg-dir", type=Path, default=PG_DIR, help="the private cluster's dir")
    parser.add_argument(
        "--database-url",
        help="a private cluster already running (any database on it) instead of starting one",
    )
    parser.add_argument("--redis-url", help="a Redis to use instead of a private embedded one")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help=f"a py-spy binary: record {PY_SPY_SECONDS} s of the tracked enqueue and drain",
    )
    args = parser.parse_args(argv)
    if args.peers is None:
        args.peers = _peers("all")
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    started = time.monotonic()
    load_before = load_average()
    say(f"load average {load_before}")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    ctx = prepare_table(stack, args)
    ctx.load_before = load_before
    reset(ctx.app)

    bare = measure_row(bare_mode(), ctx)
    tracked = measure_row(tracked_mode(), ctx)
    bulk = bulk_phase(ctx)
    disconnect()
    peers: list[dict[str, Any]] = []
    if args.peers:
        from bench.peers.run import run_peers

        say(f"peers: {', '.join(args.peers)}")
        peers = run_peers(ctx.cluster, args.jobs, args.peers, echo=False)
        for peer in peers:
            say(f"{peer['system']}: {json.dumps(peer)}")
    report(ctx, bare, tracked, peers, bulk, (time.monotonic() - started) / 60)


def main() -> None:
    run_with_cleanup(run, parse_args())


if __name__ == "__main__":
    main()

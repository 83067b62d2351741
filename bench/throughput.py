"""Throughput of Taskyard tracked jobs against bare Celery, measured in one run.

On the same Redis and the same database, for

  (a) bare Celery with the project's reliable settings (acks_late, prefetch 1... from
      config/settings.py) and django-celery-results storing results in the database:
      a no-op task with ``tracked = False``;
  (b) a Taskyard tracked no-op task (a Job row per call, published after commit, claimed
      under a lease by the worker, outcome recorded in the ledger), with the relay
      (``manage.py relay``) running as in production;

it measures

  enqueue jobs/s      N ``.delay()`` calls from this process, outside any transaction
  drain jobs/s        N jobs enqueued with no worker running, then one ``celery worker
                      --concurrency=2 --pool=prefork``; the clock starts when it answers a
                      ping and stops at the last job's finish time in the database
  worker CPU ms/job   user+system CPU of that worker (main and pool processes) over the
                      drain, per job
  p50/p99 latency     enqueue-to-start at a steady RATE jobs/s for S seconds, the worker
                      running and idle: time.time() before ``.delay()`` to time.time() at
                      the start of the task body (both returned by the task)

and prints them with the ratios (b)/(a). The issue's bar, on PostgreSQL: (b) drains at
least 0.6x as fast as (a), and (b)'s p99 enqueue-to-start is under 50 ms at 200 jobs/s.

Run it from the project directory (``make bench BENCH_ARGS="--jobs 2000"`` runs it too)::

    .venv/bin/python bench/throughput.py [--jobs 20000] [--rate 200] [--latency-seconds 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/throughput.py

Redis: REDIS_URL if set (its Celery queues are purged between phases), else a private
embedded Redis under var/bench-redis, stopped at exit. Database: with a PostgreSQL
DATABASE_URL, a separate database ``taskyard_bench`` is (re)created on that server and
used (the given database is not touched); unset, a fresh SQLite file var/bench.sqlite3.
Worker and relay logs go to var/bench-logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tests.harness import ManagedProcess, WorkerProcess

BASE_DIR = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path; the project root is what we need.
sys.path[0] = str(BASE_DIR)

VAR_DIR = BASE_DIR / "var"
LOG_DIR = VAR_DIR / "bench-logs"
REDIS_DIR = VAR_DIR / "bench-redis"
SQLITE_PATH = VAR_DIR / "bench.sqlite3"
BENCH_DATABASE = "taskyard_bench"
POSTGRES_SCHEMES = ("postgres", "postgresql")

POLL_SECONDS = 0.25
# Waiting for jobs fails when none has finished for this long (a stuck worker), however
# long the whole drain takes.
STALL_TIMEOUT_SECONDS = 120.0
# .delay() calls per mode before anything is timed (connections, imports), then discarded.
WARMUP_JOBS = 20

# The bar (on PostgreSQL).
BAR_DRAIN_RATIO = 0.6
BAR_P99_MS = 50.0
BAR_RATE = 200.0


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


def start_worker(concurrency: int = 2) -> WorkerProcess:
    """One ``celery worker`` process with ``concurrency`` prefork pool processes, on the
    default queue, running the bench tasks."""
    from tests import harness

    return harness.start_worker(
        concurrency=concurrency,
        queues=["default"],
        env=BENCH_PROCESS_ENV,
        name=f"bench-{uuid.uuid4().hex[:8]}@localhost",
        # Not INFO: a log line per job would cost the worker what we measure.
        loglevel="WARNING",
        extra_args=["--include=bench.tasks"],
        log_dir=LOG_DIR,
    )


def start_relay(redis_client) -> ManagedProcess:
    """Start ``manage.py relay``; return after its first tick.

    The first tick of a relay that finds no broker epoch key republishes every queued job
    (it takes the broker for wiped), so jobs are enqueued only after that tick."""
    from queueing.relay.loop import EPOCH_KEY
    from tests import harness

    redis_client.delete(EPOCH_KEY)
    return harness.start_relay(
        BENCH_PROCESS_ENV, ready=lambda: redis_client.exists(EPOCH_KEY), log_dir=LOG_DIR
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
    return Mode("(a) bare Celery + results", bare_noop, succeeded, "date_done", "result")


def tracked_mode() -> Mode:
    from bench.tasks import tracked_noop
    from queueing.models import Job, JobStatus

    succeeded = Job.objects.filter(status=JobStatus.SUCCEEDED)
    return Mode("(b) Taskyard tracked", tracked_noop, succeeded, "finished_at", "result")


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


def measure(mode: Mode, app, args: argparse.Namespace) -> dict[str, float]:
    say(f"{mode.label}: warming up")
    for _ in range(WARMUP_JOBS):
        mode.task.delay(0.0)
    reset(app)

    say(f"{mode.label}: enqueueing {args.jobs} jobs, no worker running")
    started = time.perf_counter()
    for _ in range(args.jobs):
        mode.task.delay(0.0)
    results = {"enqueue jobs/s": args.jobs / (time.perf_counter() - started)}

    say(f"{mode.label}: draining them with one worker (prefork, concurrency 2)")
    worker = start_worker()
    try:
        # A few jobs may finish between the worker's start and its ping answer: they are
        # left out of the timing.
        done_before, cpu_before, clock = mode.done(), cpu_seconds(worker), time.time()
        wait_for_jobs(mode, args.jobs, worker)
        cpu_used = cpu_seconds(worker) - cpu_before
        timed = args.jobs - done_before
        if timed < 1:
            raise SystemExit("bench: all jobs ran before the worker answered; raise --jobs")
        results["drain jobs/s"] = timed / (mode.last_finish() - clock)
        results["worker CPU ms/job"] = cpu_used * 1000 / timed

        reset(app)
        count = max(1, round(args.rate * args.latency_seconds))
        say(f"{mode.label}: {count} jobs at {args.rate:g} jobs/s for enqueue-to-start")
        interval = 1.0 / args.rate
        begin = time.perf_counter()
        for n in range(count):  # the n-th call at begin + n * interval
            pause = begin + n * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            mode.task.delay(time.time())
        sending = time.perf_counter() - begin
        wait_for_jobs(mode, count, worker)
        latencies = sorted(start - sent for sent, start in mode.timestamps())
        results["steady rate sent jobs/s"] = count / sending
        results["p50 enqueue-to-start ms"] = percentile(latencies, 50) * 1000
        results["p99 enqueue-to-start ms"] = percentile(latencies, 99) * 1000
    finally:
        worker.stop()
    return results


# --- report -----------------------------------------------------------------------------


def describe_database() -> str:
    from django.db import connection

    query = (
        "SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()"
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        version = cursor.fetchone()[0]
    return f"{connection.display_name} {version} ({connection.settings_dict['NAME']})"


def report(args, bare: dict[str, float], tracked: dict[str, float], redis_client) -> None:
    import celery
    import django
    from django.db import connection

    redis_version = redis_client.info("server")["redis_version"]
    print()
    print(f"database   {describe_database()}")
    print(f"broker     Redis {redis_version} ({os.environ['REDIS_URL']})")
    print(
        f"jobs       N={args.jobs} for enqueue and drain; latency at {args.rate:g} jobs/s for "
        f"{args.latency_seconds:g} s; worker: 1 process, prefork, concurrency 2"
    )
    print(
        f"versions   Python {platform.python_version()}, Django {django.get_version()}, "
        f"Celery {celery.__version__}"
    )
    print()
    print(f"{'metric':26} {'(a) bare+results':>16} {'(b) tracked':>14} {'(b)/(a)':>9}")
    for metric, value in bare.items():
        ratio = tracked[metric] / value if value else float("nan")
        print(f"{metric:26} {value:16.1f} {tracked[metric]:14.1f} {ratio:9.2f}")
    print()
    drain_ratio = tracked["drain jobs/s"] / bare["drain jobs/s"]
    p99 = tracked["p99 enqueue-to-start ms"]
    where = "" if connection.vendor == "postgresql" else " (the bar is set for PostgreSQL)"
    print(f"bar{where}:")
    print(
        f"  tracked drain >= {BAR_DRAIN_RATIO:g}x bare: {drain_ratio:.2f}x  "
        f"{'met' if drain_ratio >= BAR_DRAIN_RATIO else 'NOT met'}"
    )
    rate_note = "" if args.rate == BAR_RATE else f" (measured at {args.rate:g} jobs/s)"
    print(
        f"  tracked p99 enqueue-to-start < {BAR_P99_MS:g} ms at {BAR_RATE:g} jobs/s: "
        f"{p99:.1f} ms  {'met' if p99 < BAR_P99_MS else 'NOT met'}{rate_note}"
    )
    for label, results in (("(a)", bare), ("(b)", tracked)):
        print_caveats(label, results, args.rate)


def print_caveats(label: str, results: dict[str, float], rate: float) -> None:
    """Say when the latency run did not measure what it is meant to."""
    if results["steady rate sent jobs/s"] < 0.95 * rate:
        print(
            f"  note: {label} enqueue kept up with only {results['steady rate sent jobs/s']:.0f}"
            f" of the {rate:g} jobs/s asked in the latency run"
        )
    if results["drain jobs/s"] < rate:
        print(
            f"  note: {label} drains {results['drain jobs/s']:.0f} jobs/s, below the latency "
            "run's rate: its queue grows during that run, so its latency is mostly backlog"
        )


# --- main -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000, help="N jobs to enqueue and drain")
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s of the latency run")
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="length of the latency run"
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.rate <= 0 or args.latency_seconds <= 0:
        parser.error("--jobs, --rate and --latency-seconds must be positive")
    return args


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


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    redis_client = prepare(stack)
    import bench.tasks  # noqa: F401 - registers the bench tasks in this process
    from config.celery import app

    reset(app)

    bare = measure(bare_mode(), app, args)
    say("starting the relay")
    relay = start_relay(redis_client)
    stack.callback(relay.stop)
    tracked = measure(tracked_mode(), app, args)
    report(args, bare, tracked, redis_client)


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


def main() -> None:
    run_with_cleanup(run, parse_args())


if __name__ == "__main__":
    main()

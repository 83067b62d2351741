"""Throughput of tracked jobs against bare Celery, in one run (issue: the job ledger).

    .venv/bin/python bench/throughput.py [--jobs 20000] [--rate 200] [--latency-seconds 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/throughput.py

On the same Redis and database, for (a) bare Celery with the project's reliable settings
(acks_late, prefetch 1...) and django-celery-results in the database, and (b) Taskyard
tracked jobs (ledger row, claim, lease, outcome; the relay running as in production):

  enqueue jobs/s      N calls of .delay() from this process, outside any transaction
  drain jobs/s        N waiting jobs through one worker with 2 prefork processes
  worker CPU ms/job   user+system CPU of that worker (main + pool) over the drain / N
  p50/p99 latency     enqueue-to-start at a steady RATE jobs/s for S seconds

and the ratios (b)/(a). Uses REDIS_URL if set, else a private embedded Redis under
var/bench-redis; DATABASE_URL if set (PostgreSQL: a separate database taskyard_bench is
(re)created on that server), else SQLite at var/bench.sqlite3.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
sys.path.insert(0, str(BASE_DIR))
BENCH_DB = "taskyard_bench"


def prepare_environment() -> object | None:
    """Point this process (and the workers it starts) at the bench Redis and database."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("DEBUG", "1")
    os.environ["LOG_LEVEL"] = "WARNING"
    redis_server = None
    if not os.environ.get("REDIS_URL"):
        from devstack import embedded_redis

        redis_server = embedded_redis.start(VAR_DIR / "bench-redis", appendonly=False)
        os.environ["REDIS_URL"] = redis_server.url
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urlsplit(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    else:
        path = VAR_DIR / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return redis_server


def spawn(argv: list[str]) -> subprocess.Popen:
    log = (VAR_DIR / "bench-logs").resolve()
    log.mkdir(parents=True, exist_ok=True)
    out = log / f"{Path(argv[2] if len(argv) > 2 else 'p').name}-{uuid.uuid4().hex[:6]}.log"
    return subprocess.Popen(
        argv, cwd=BASE_DIR, stdout=out.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True, env=dict(os.environ),
    )  # fmt: skip


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(interval)
    return value


class Worker:
    """One `celery worker` with 2 prefork processes on the default queue."""

    def __init__(self, app) -> None:
        self.app = app
        self.name = f"bench-{uuid.uuid4().hex[:6]}@localhost"
        self.process = spawn([
            sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=2",
            "--pool=prefork", "--queues=default", "--include=bench.tasks",
            f"--hostname={self.name}", "--without-mingle", "--without-gossip",
            "--loglevel=WARNING",
        ])  # fmt: skip
        wait_for(self._answers, 60, "the worker to start", interval=0.2)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit("bench: the worker exited at start (see var/bench-logs)")
        with self.app.connection_for_write() as conn:
            replies = self.app.control.ping([self.name], timeout=0.5, connection=conn)
        return any(self.name in reply for reply in replies)

    def cpu_seconds(self) -> float:
        import psutil

        main = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [main, *main.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        stop(self.process)


def measure(name: str, task, done_count, latencies, args) -> dict:
    from config.celery import app

    results: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(args.jobs):
        task.delay(0.0)
    results["enqueue jobs/s"] = args.jobs / (time.perf_counter() - started)

    worker = Worker(app)
    try:
        cpu_before = worker.cpu_seconds()
        started = time.perf_counter()
        wait_for(lambda: done_count() >= args.jobs, 3600, f"{name}: drain", interval=0.25)
        elapsed = time.perf_counter() - started
        results["drain jobs/s"] = args.jobs / elapsed
        results["worker CPU ms/job"] = (worker.cpu_seconds() - cpu_before) * 1000 / args.jobs

        before = done_count()
        count = int(args.rate * args.latency_seconds)
        interval = 1.0 / args.rate
        begin = time.perf_counter()
        for n in range(count):  # paced: the n-th call at begin + n * interval
            delay = begin + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            task.delay(time.time())
        wait_for(lambda: done_count() >= before + count, 600, f"{name}: latency run")
        samples = sorted(latencies(count))
        results["p50 enqueue-to-start ms"] = statistics.median(samples) * 1000
        results["p99 enqueue-to-start ms"] = samples[int(len(samples) * 0.99) - 1] * 1000
    finally:
        worker.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()

    redis_server = prepare_environment()
    relay = None
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django_celery_results.models import TaskResult

        from bench import tasks
        from config.celery import app
        from queueing.models import Job, JobStatus

        call_command("migrate", verbosity=0)
        app.control.purge()

        def bare_done() -> int:
            return TaskResult.objects.filter(status="SUCCESS").count()

        def bare_latencies(count: int) -> list[float]:
            import json

            pairs = (json.loads(r) for r in TaskResult.objects.values_list("result", flat=True))
            return [started - sent for sent, started in pairs if sent > 0][-count:]

        def tracked_done() -> int:
            return Job.objects.filter(status=JobStatus.SUCCEEDED).count()

        def tracked_latencies(count: int) -> list[float]:
            rows = Job.objects.exclude(args=[0.0]).values_list("enqueued_at", "started_at")
            return [(start - enq).total_seconds() for enq, start in rows][-count:]

        bare = measure("bare", tasks.bare_noop, bare_done, bare_latencies, args)
        TaskResult.objects.all().delete()
        app.control.purge()
        relay = spawn([sys.executable, "manage.py", "relay"])
        tracked = measure("tracked", tasks.tracked_noop, tracked_done, tracked_latencies, args)

        import celery
        from django.db import connection

        print(f"\njobs {args.jobs}, latency at {args.rate:.0f} jobs/s for "
              f"{args.latency_seconds:.0f} s; database {connection.vendor}; "
              f"Python {platform.python_version()}, Celery {celery.__version__}")  # fmt: skip
        print(f"{'metric':28} {'(a) bare+results':>18} {'(b) tracked':>14} {'(b)/(a)':>9}")
        for metric in bare:
            ratio = tracked[metric] / bare[metric] if bare[metric] else float("nan")
            print(f"{metric:28} {bare[metric]:18.1f} {tracked[metric]:14.1f} {ratio:9.2f}")
    finally:
        stop(relay)
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    main()

"""Load time of the admin dashboard with a large ledger (the issue's bar: < 300 ms with
1,000,000 jobs).

Fills a fresh bench database with N jobs (default 1,000,000) spread over the last 24 h:
97 % succeeded, 1 % dead, 1 % queued, 0.5 % scheduled, 0.5 % retrying, over the declared
queues, plus one attempt row for every job that finished in the last hour and the per-minute
roll-ups in Redis that workers write for them. Then renders
``/admin/queueing/dashboard/`` (logged in, through Django's test client: the full view,
queries and template, without network) REPEAT times and prints the median and the worst,
next to two baselines measured in the same run on the same data:

  - a naive status count (``GROUP BY queue, status`` over every job, what a dashboard
    without the partial index would run), and
  - ``/metrics`` (the Prometheus scrape, which counts every status).

    .venv/bin/python bench/dashboard.py [--jobs 1000000] [--repeat 7]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/dashboard.py
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.throughput import configure_environment, run_with_cleanup, say  # noqa: E402

# status, share of all jobs (per 1000)
MIX = (("succeeded", 970), ("dead", 10), ("queued", 10), ("scheduled", 5), ("retrying", 5))


def fill(count: int) -> None:
    """Insert ``count`` jobs with one SQL statement per status (generate_series on
    PostgreSQL, a recursive CTE on SQLite), then the last hour's attempts."""
    from django.conf import settings
    from django.db import connection

    queues = list(settings.TASKYARD_QUEUES)
    vendor = connection.vendor
    start = 0
    with connection.cursor() as cursor:
        for status, share in MIX:
            n = count * share // 1000
            cursor.execute(_jobs_sql(vendor, status, start, n, queues))
            start += n
        cursor.execute(_attempts_sql(vendor))
        _fill_rollups()
        if vendor == "postgresql":
            cursor.execute("ANALYZE queueing_job; ANALYZE queueing_jobattempt")
        else:
            cursor.execute("ANALYZE")


def _fill_rollups() -> None:
    """What the workers would have written to Redis for those attempts."""
    from queueing.broker import shared_redis
    from queueing.counters import add_to_minute
    from queueing.models import JobAttempt

    pipe = shared_redis(text=True).pipeline(transaction=False)
    rows = JobAttempt.objects.values_list("job__queue", "outcome", "duration_ms", "finished_at")
    for queue, outcome, ms, finished in rows.iterator(chunk_size=5000):
        add_to_minute(pipe, queue, outcome, ms / 1000, int(finished.timestamp() // 60))
        if len(pipe) > 5000:
            pipe.execute()
    pipe.execute()


def _jobs_sql(vendor: str, status: str, start: int, n: int, queues: list[str]) -> str:
    finished = status in ("succeeded", "dead")
    queue_case = (
        "CASE "
        + " ".join(f"WHEN i % {len(queues)} = {k} THEN '{q}'" for k, q in enumerate(queues))
        + " END"
    )
    if vendor == "postgresql":
        rows = f"generate_series({start}, {start + n - 1}) AS i"
        uid = "gen_random_uuid()"
        ago = "now() - (i % 86400) * interval '1 second'"
        due = "now() + interval '1 hour'"
    else:
        rows = (
            f"(WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s "  # noqa: S608
            f"WHERE i < {start + n - 1}) SELECT i FROM s)"
        )
        uid = "lower(hex(randomblob(16)))"
        ago = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i % 86400) || ' seconds')"
        due = "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 hour')"
    run_at = due if status in ("scheduled", "retrying") else "NULL"
    done_at = ago if finished else "NULL"
    started = ago if finished else "NULL"
    return f"""
        INSERT INTO queueing_job (id, task_name, queue, args, kwargs, options, priority,
            status, origin, attempts, max_attempts, run_at, enqueued_at, published_at,
            started_at, finished_at, lease_owner, fencing_token, last_error_class,
            last_error_message, last_error_traceback, progress_message)
        SELECT {uid}, 'queueing.ping', {queue_case}, '[]', '{{}}', '{{}}', 5, '{status}',
            'ledger', 1, 5, {run_at}, {ago}, {ago}, {started}, {done_at}, '', 1, '', '', '',
            ''
        FROM {rows}
    """  # noqa: S608 - constants only


def _attempts_sql(vendor: str) -> str:
    hour_ago = (
        "now() - interval '1 hour'"
        if vendor == "postgresql"
        else "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour')"
    )
    return f"""
        INSERT INTO queueing_jobattempt (job_id, number, fencing_token, worker, started_at,
            finished_at, duration_ms, outcome, error_class, error_message, error_kind)
        SELECT id, 1, 1, 'bench@host', started_at, finished_at, 20 + (attempts * 7) % 500,
            CASE WHEN status = 'dead' THEN 'dead' ELSE 'succeeded' END, '', '', ''
        FROM queueing_job
        WHERE status IN ('succeeded', 'dead') AND finished_at >= {hour_ago}
    """  # noqa: S608 - constants only


def timed(call, repeat: int) -> list[float]:
    call()  # warm: connections, template compilation
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    configure_environment(stack)
    import os

    os.environ.setdefault("METRICS_TOKEN", "bench")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db.models import Count
    from django.test import Client

    from bench.throughput import describe_database
    from queueing.models import Job, JobAttempt

    settings.ALLOWED_HOSTS = ["testserver"]
    say(f"migrating {os.environ['DATABASE_URL']}")
    call_command("migrate", verbosity=0, interactive=False)
    say(f"inserting {args.jobs} jobs")
    started = time.monotonic()
    fill(args.jobs)
    say(
        f"inserted {Job.objects.count()} jobs and {JobAttempt.objects.count()} attempts "
        f"in {time.monotonic() - started:.1f} s"
    )
    user = User.objects.create_superuser("bench", password=None)
    client = Client()
    client.force_login(user)

    def dashboard():
        response = client.get("/admin/queueing/dashboard/")
        assert response.status_code == 200, response.status_code

    def naive_counts():
        list(Job.objects.values("queue", "status").annotate(n=Count("id")))

    def metrics():
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer bench")
        assert response.status_code == 200, response.status_code

    results = {
        "dashboard page": timed(dashboard, args.repeat),
        "(baseline) naive GROUP BY count": timed(naive_counts, args.repeat),
        "(baseline) /metrics scrape": timed(metrics, args.repeat),
    }
    print()
    print(
        f"Dashboard with {Job.objects.count():,} jobs, {describe_database()}, "
        f"{args.repeat} runs each"
    )
    print(f"{'':34} {'median ms':>10} {'max ms':>8}")
    for label, samples in results.items():
        print(f"{label:34} {statistics.median(samples):10.1f} {max(samples):8.1f}")
    page = statistics.median(results["dashboard page"])
    naive = statistics.median(results["(baseline) naive GROUP BY count"])
    print(f"dashboard / naive count: {page / naive:.2f}")
    print(
        f"bar (dashboard < 300 ms): {'met' if max(results['dashboard page']) < 300 else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if args.jobs < 1000 or args.repeat < 1:
        parser.error("--jobs must be at least 1000 and --repeat positive")
    run_with_cleanup(run, args)


if __name__ == "__main__":
    main()

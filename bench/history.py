"""Cost of the stats surfaces as the ledger grows (issue 17's bar: each under 300 ms with
10 million ledger rows): GET /api/v1/queue/stats, /stats/<queue>, /metrics (the API's
series), /status, the Prometheus ``/metrics`` scrape, the admin dashboard and the
minute's alert check (``queueing.observe.alerts.evaluate``, called directly).

Grows one PostgreSQL database step by step (default 1, 3 and 10 million jobs) and times
every surface after each step, so a flat cost shows as equal columns. Jobs are inserted
with generate_series (one statement per status and step, spread over the last 24 h): a
fixed live backlog (``--backlog``, 30,000 queued, scheduled, retrying and dead jobs in
bench/dashboard.py's proportions) and succeeded jobs for the rest, since what grows in
production is the finished history; one attempt per job that finished in the last hour,
the workers' per-minute roll-ups in Redis for those attempts, and 30 days of 5-minute
history rows (QueueStat). After each step ``VACUUM ANALYZE``, as autovacuum would.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/history REDIS_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python bench/history.py [--steps 1000000,3000000,10000000] [--repeat 7]

The database named in DATABASE_URL is emptied first (its queueing tables); REDIS_URL's
minute roll-ups are overwritten.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.dashboard import MIX, timed  # noqa: E402

BAR_MS = 300.0
HISTORY_DAYS = 30
# The live backlog (queued, scheduled, retrying, dead: bench/dashboard.py's mix of a
# million jobs) stays this size while the ledger grows: what grows in production is the
# finished history. Live counts grow with the backlog (--backlog to see it).
BACKLOG = 30_000
# The bucket that ended last, as the 5-minute snapshot keeps it in production: history
# rows up to there (a rerun tops them up), Redis roll-ups for the minutes since.
LAST_BUCKET = "to_timestamp(floor(extract(epoch FROM now()) / 300) * 300 - 300)"


def _jobs_sql(status: str, start: int, n: int, queues: list[str], tag: str) -> str:
    finished = status in ("succeeded", "dead")
    queue_case = (
        "CASE "
        + " ".join(f"WHEN i % {len(queues)} = {k} THEN '{q}'" for k, q in enumerate(queues))
        + " END"
    )
    ago = "now() - (i % 86400) * interval '1 second'"
    due = "now() + interval '1 hour'" if status in ("scheduled", "retrying") else "NULL"
    done = ago if finished else "NULL"
    return f"""
        INSERT INTO queueing_job (id, task_name, queue, args, kwargs, options, priority,
            status, origin, attempts, max_attempts, run_at, enqueued_at, published_at,
            started_at, finished_at, lease_owner, fencing_token, last_error_class,
            last_error_message, last_error_traceback, progress_message)
        SELECT gen_random_uuid(), 'bench.task' || (i % 12), {queue_case}, '[]', '{{}}', '{{}}',
            5, '{status}', 'ledger', 1, 5, {due}, {ago}, {ago}, {done}, {done}, '{tag}', 1,
            '', '', '', ''
        FROM generate_series({start}, {start + n - 1}) AS i
    """  # noqa: S608 - constants only


def _attempts_sql(tag: str) -> str:
    return f"""
        INSERT INTO queueing_jobattempt (job_id, number, fencing_token, worker, started_at,
            finished_at, duration_ms, outcome, error_class, error_message, error_kind)
        SELECT id, 1, 1, 'bench@host', started_at, finished_at,
            20 + (abs(hashtext(id::text)) % 500),
            CASE WHEN status = 'dead' THEN 'dead' ELSE 'succeeded' END, '', '', ''
        FROM queueing_job
        WHERE lease_owner = '{tag}' AND status IN ('succeeded', 'dead')
          AND finished_at >= now() - interval '1 hour'
    """  # noqa: S608 - constants only


def _history_sql(queues: list[str]) -> str:
    names = ", ".join(f"'{q}'" for q in queues)
    return f"""
        INSERT INTO queueing_queuestat (queue, bucket, taken_at, scheduled, queued, running,
            retrying, dead, oldest_waiting_seconds, attempts, succeeded, failed, died,
            throughput_per_minute, failure_rate, wait_p50_ms, wait_p95_ms, wait_p99_ms,
            run_p50_ms, run_p95_ms, run_p99_ms, run_histogram, run_ms_total, wait_histogram,
            is_demo)
        SELECT q, b, b + interval '5 minutes', 5, 100, 4, 3, 10, 2.5, 500, 490, 10, 1, 98,
            0.02, 40, 300, 900, 45, 400, 800, '{{"1": 100, "3": 300, "4": 90, "6": 10}}',
            85000, '{{"2": 250, "4": 200, "6": 50}}', false
        FROM unnest(ARRAY[{names}]) AS q,
             generate_series({LAST_BUCKET} - interval '{HISTORY_DAYS} days', {LAST_BUCKET},
                             interval '5 minutes') AS b
        ON CONFLICT DO NOTHING
    """  # noqa: S608 - constants only


def _rollups(tag: str) -> None:
    """The roll-ups workers would have written for this step's attempts (counts grouped
    in SQL, then HINCRBY by the count)."""
    from django.db import connection

    from queueing.broker import shared_redis
    from queueing.counters import MINUTE_KEY, MINUTE_TTL_SECONDS, RUN_BUCKETS

    sql = """
        SELECT j.queue, floor(extract(epoch FROM a.finished_at) / 60)::bigint, a.outcome,
               a.duration_ms, count(*)
        FROM queueing_jobattempt a JOIN queueing_job j ON j.id = a.job_id
        WHERE j.lease_owner = %s GROUP BY 1, 2, 3, 4
    """
    pipe = shared_redis(text=True).pipeline(transaction=False)
    with connection.cursor() as cursor:
        cursor.execute(sql, [tag])
        for queue, minute, outcome, ms, n in cursor.fetchall():
            key = MINUTE_KEY.format(queue=queue, minute=minute)
            pipe.hincrby(key, "succeeded" if outcome == "succeeded" else "failed", n)
            index = next((str(i) for i, edge in enumerate(RUN_BUCKETS) if ms / 1000 <= edge), "inf")
            pipe.hincrby(key, f"run{index}", n)
            pipe.hincrby(key, "duration_ms", ms * n)
            pipe.hincrby(key, "wait0", n)  # the filler's jobs start as they are enqueued
            pipe.expire(key, MINUTE_TTL_SECONDS)
    pipe.execute()


def alert_check(sql_ms: list[float]):
    """A call of the minute's alert check as beat runs it, minus the notifying
    (alerts.evaluate: every finding), adding its time in SQL to ``sql_ms``."""
    from django.db import connection, reset_queries

    from queueing.observe.alerts import evaluate

    def call() -> None:
        reset_queries()
        evaluate()
        sql_ms.append(sum(float(q["time"]) for q in connection.queries) * 1000)

    return call


def grow(total_before: int, target: int, step: int, backlog: int = BACKLOG) -> None:
    from django.conf import settings
    from django.db import connection

    queues = list(settings.TASKYARD_QUEUES)
    tag = f"bench-step-{step}"
    count = target - total_before
    start = total_before
    with connection.cursor() as cursor:
        open_share = sum(share for status, share in MIX if status != "succeeded")
        for status, share in MIX:
            if status == "succeeded":
                n = count - (backlog if step == 0 else 0)
            else:
                n = backlog * share // open_share if step == 0 else 0
            cursor.execute(_jobs_sql(status, start, n, queues, tag))
            start += n
        cursor.execute(_attempts_sql(tag))
    _rollups(tag)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE queueing_job")
        cursor.execute("VACUUM ANALYZE queueing_jobattempt")
        cursor.execute("VACUUM ANALYZE queueing_queuestat")


def print_table(
    results: dict[str, dict[int, list[float]]],
    steps: list[int],
    repeat: int,
    database: str,
    in_sql: dict[str, dict[int, list[float]]],
) -> None:
    print()
    print(f"{database}; {repeat} runs each; median / max in ms")
    header = "".join(f"{f'{n / 1e6:g}M jobs':>18}" for n in steps)
    print(f"{'':26}{header}")
    worst = 0.0
    for name, by_size in results.items():
        cells = "".join(
            f"{statistics.median(s):9.1f} /{max(s):6.1f}" for s in (by_size[n] for n in steps)
        )
        worst = max(worst, *(max(s) for s in by_size.values()))
        print(f"{name:26}{cells}")
    verdict = "met" if worst < BAR_MS else "NOT met"
    print(f"bar (every surface < {BAR_MS:g} ms at every size): {verdict} (worst {worst:.1f} ms)")
    print()
    print("of which in SQL (median ms): the part that would grow with the ledger")
    for name, by_size in in_sql.items():
        cells = "".join(f"{statistics.median(by_size[n]):18.1f}" for n in steps)
        print(f"{name:26}{cells}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000000,3000000,10000000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backlog", type=int, default=BACKLOG, help="open jobs, fixed")
    parser.add_argument(
        "--again",
        action="store_true",
        help="time the database as the last run left it (no emptying, no growth)",
    )
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL database (it is emptied first)")
    if steps != sorted(steps) or steps[0] < 1000:
        parser.error("--steps must grow, from at least 1000")
    args.steps = steps
    return args


def main() -> None:
    args = parse_args()
    steps = args.steps
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("METRICS_TOKEN", "bench")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client

    from bench.throughput import describe_database

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        if not args.again:
            cursor.execute("TRUNCATE queueing_job, queueing_jobattempt, queueing_queuestat CASCADE")
        cursor.execute(_history_sql(list(settings.TASKYARD_QUEUES)))
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    queue = next(iter(settings.TASKYARD_QUEUES))

    sql_ms: list[float] = []  # time in SQL of each call (DEBUG records every query)

    def get(url: str, **headers):
        def call():
            reset_queries()
            response = client.get(url, **headers)
            assert response.status_code == 200, (url, response.status_code)
            sql_ms.append(sum(float(q["time"]) for q in connection.queries) * 1000)

        return call

    surfaces = {
        # the machine's noise floor: a request that reads no ledger (SELECT 1)
        "(control) /health/live": get("/health/live"),
        "API stats (60 min)": get("/api/v1/queue/stats"),
        "API stats (1440 min)": get("/api/v1/queue/stats?minutes=1440"),
        f"API stats/{queue}": get(f"/api/v1/queue/stats/{queue}"),
        "API metrics (60 min)": get("/api/v1/queue/metrics"),
        "API metrics (1440 min)": get("/api/v1/queue/metrics?minutes=1440"),
        "API status": get("/api/v1/queue/status"),
        "/metrics (Prometheus)": get("/metrics", HTTP_AUTHORIZATION="Bearer bench"),
        "admin dashboard": get("/admin/queueing/dashboard/"),
        "alert check (evaluate)": alert_check(sql_ms),
    }
    results: dict[str, dict[int, list[float]]] = {name: {} for name in surfaces}
    in_sql: dict[str, dict[int, list[float]]] = {name: {} for name in surfaces}
    total = 0
    if args.again:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM queueing_job")
            steps = [cursor.fetchone()[0]]
    for index, target in enumerate(steps):
        started = time.monotonic()
        if not args.again:
            grow(total, target, index, args.backlog)
        total = target
        print(f"# {target:,} jobs in the ledger ({time.monotonic() - started:.0f} s to grow)")
        for name, call in surfaces.items():
            results[name][target] = timed(call, args.repeat)
            in_sql[name][target] = sql_ms[-args.repeat :]
    print_table(results, steps, args.repeat, describe_database(), in_sql)


if __name__ == "__main__":
    main()

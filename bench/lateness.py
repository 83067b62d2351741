"""Lateness of delayed jobs: Taskyard's ledger + relay against Celery's own ETAs.

The issue's bar: at 100 due jobs/s, p99 lateness (start of the task body minus the time
the job was due) under 1 s. Measured in one run, on the same Redis and database, with one
running worker (prefork, --concurrency 4 by default) for each side:

  (a) bare Celery: ``apply_async(eta=due)`` on an untracked no-op task. The worker
      fetches every ETA message at once and holds it in its memory until due (and Redis
      redelivers it if the ETA is further away than the visibility timeout);
  (b) Taskyard: the same call on a tracked no-op task. The job waits as a row
      (``scheduled``, ``run_at``), with no message anywhere, until ``manage.py relay``
      publishes it when due.

For each side, N = RATE x SECONDS jobs are enqueued first, due one every 1/RATE s
starting LEAD s later; the run then waits for all of them. Printed per side: lateness
p50/p95/p99/max (task start - due), and for (b) also how late the relay published them
(published_at - run_at). Also printed: messages in Redis while the jobs wait (a) holds
them in the worker, (b) has none.

    .venv/bin/python bench/lateness.py [--rate 100] [--seconds 30] [--lead 20] [--concurrency 4]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/lateness.py

Redis and database as in bench/throughput.py (private embedded Redis unless REDIS_URL is
set; a fresh SQLite file, or a fresh ``taskyard_bench`` database on the given PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.throughput import (  # noqa: E402
    Mode,
    bare_mode,
    percentile,
    prepare,
    reset,
    run_with_cleanup,
    say,
    start_relay,
    start_worker,
    tracked_mode,
    wait_for_jobs,
)


def waiting_messages(redis_client) -> int:
    """Messages in the default queue's Redis lists plus those a worker holds unacked."""
    from queueing.ledger.enqueue import broker_queue_keys

    listed = sum(redis_client.llen(key) for key in broker_queue_keys("default"))
    return listed + redis_client.hlen("unacked")


def measure(mode: Mode, app, redis_client, args: argparse.Namespace) -> dict[str, float]:
    """Enqueue the jobs due at RATE/s after LEAD s, wait for all, return the lateness."""
    count = round(args.rate * args.seconds)
    worker = start_worker(concurrency=args.concurrency)
    try:
        first_due = time.time() + args.lead
        say(f"{mode.label}: enqueuing {count} jobs due at {args.rate:g}/s from +{args.lead:g} s")
        for n in range(count):
            due = first_due + n / args.rate
            eta = dt.datetime.fromtimestamp(due, tz=dt.UTC)
            # The due time travels as the argument the no-op task returns with its start.
            mode.task.apply_async((due,), eta=eta)
        spare = first_due - time.time()
        if spare < 0:
            say(
                f"warning: enqueuing ended {-spare:.1f} s after the first job was due; raise --lead"
            )
        held = waiting_messages(redis_client)
        say(f"{mode.label}: {held} messages in Redis while the jobs wait; draining")
        wait_for_jobs(mode, count, worker)
    finally:
        worker.stop()
    late = sorted(started - due for due, started in mode.timestamps())
    result = {
        "jobs": count,
        "messages_waiting": held,
        "p50": percentile(late, 50),
        "p95": percentile(late, 95),
        "p99": percentile(late, 99),
        "max": late[-1],
    }
    if mode.label.startswith("(b)"):
        # A promoted job's published_at is the relay's stamp; run_at stays on the row.
        relay_late = sorted(
            (published - run_at).total_seconds()
            for published, run_at in mode.succeeded.filter(run_at__isnull=False).values_list(
                "published_at", "run_at"
            )
        )
        result["relay_p99"] = percentile(relay_late, 99) if relay_late else float("nan")
        result["relay_max"] = relay_late[-1] if relay_late else float("nan")
    reset(app)
    return result


def report(args: argparse.Namespace, bare: dict, tracked: dict) -> None:
    from bench.throughput import describe_database

    print()
    print(
        f"Lateness of delayed jobs: {bare['jobs']} jobs due at {args.rate:g}/s, database "
        f"{describe_database()}, one worker, prefork, concurrency {args.concurrency}"
    )
    print(f"{'':32} {'(a) Celery ETA':>15} {'(b) Taskyard':>13} {'b/a':>6}")
    for key, label in (
        ("p50", "p50 lateness ms"),
        ("p95", "p95 lateness ms"),
        ("p99", "p99 lateness ms"),
        ("max", "max lateness ms"),
    ):
        a, b = bare[key] * 1000, tracked[key] * 1000
        ratio = b / a if a > 0 else float("nan")
        print(f"{label:32} {a:15.1f} {b:13.1f} {ratio:6.2f}")
    print(
        f"{'messages in Redis while waiting':32} {bare['messages_waiting']:15d} "
        f"{tracked['messages_waiting']:13d}"
    )
    print(
        f"(b) relay publish lateness: p99 {tracked['relay_p99'] * 1000:.1f} ms, "
        f"max {tracked['relay_max'] * 1000:.1f} ms"
    )
    verdict = "met" if tracked["p99"] < 1.0 else "NOT met"
    print(f"bar (p99 lateness < 1 s at {args.rate:g} due jobs/s): {verdict}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="due jobs per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the due window")
    parser.add_argument(
        "--lead", type=float, default=20.0, help="seconds from enqueuing to the first due job"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="worker pool processes")
    args = parser.parse_args()
    if args.concurrency < 1:
        parser.error("--concurrency must be positive")
    if args.rate <= 0 or args.seconds <= 0 or args.lead <= 0:
        parser.error("--rate, --seconds and --lead must be positive")
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    redis_client = prepare(stack)
    import bench.tasks  # noqa: F401 - registers the bench tasks in this process
    from config.celery import app

    reset(app)
    bare = measure(bare_mode(), app, redis_client, args)
    say("starting the relay")
    relay = start_relay(redis_client)
    stack.callback(relay.stop)
    tracked = measure(tracked_mode(), app, redis_client, args)
    report(args, bare, tracked)


def main() -> None:
    run_with_cleanup(run, parse_args())


if __name__ == "__main__":
    main()

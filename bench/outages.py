"""Drain time after a broker outage: Redis back with its data against Redis back empty.

Issue 19's bar: jobs enqueued during an outage must not be stranded when the broker comes
back *with* its data (AOF on, a partition, a hang), so the drain takes about as long as
when it comes back empty (where the relay republishes everything at once): within 20 %.

For each case, on the bench's own database and its own embedded Redis:

  1. the relay runs, no worker: N/2 tracked jobs are enqueued and published (their
     messages wait in Redis); each job's body writes one row in its own transaction
     (``atomic``, as the tests' SideEffect), so an effect committed twice shows;
  2. Redis stops (case "with data": SHUTDOWN SAVE, so it comes back with every message;
     case "empty": SHUTDOWN NOSAVE), N/2 more jobs are enqueued during the outage (the
     callers get no error; the jobs wait unpublished), and it stays down 3 s;
  3. Redis starts again and one worker (2 prefork processes) starts; the drain is the
     time from the broker's return to the last job's finish.

It prints, per case: the drain; the longest wait after the broker's return (a job's
start minus the later of its enqueue and the return: jobs stranded without a message
would wait longer with data than empty); duplicate effects (jobs whose row committed
twice) and missing ones (jobs without a row); and the ratio of the median drains. The
cases alternate over ``--rounds`` rounds: on a shared machine the load drifts.

    .venv/bin/python bench/outages.py [--jobs 1000] [--rounds 3]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/outages.py

(BENCH_DATABASE names the bench's PostgreSQL database, default taskyard_bench.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.throughput import (  # noqa: E402 - after the path fix above
    BASE_DIR,
    prepare,
    run_with_cleanup,
    say,
    start_relay,
    start_worker,
)

REDIS_DIR = BASE_DIR / "var" / "bench-outage-redis"
OUTAGE_SECONDS = 3.0
# Issue 19's bars.
TARGET_RATIO = 1.20


@dataclass
class Outcome:
    drain: float  # seconds from the broker's return to the last job's finish
    longest_wait: float  # seconds: max over jobs of start - max(enqueue, return)
    duplicates: int  # jobs whose effect committed more than once
    missing: int  # jobs without an effect


def outcome(back: float) -> Outcome:
    from django.db import connection

    from queueing.models import Job

    times = list(Job.objects.values_list("enqueued_at", "started_at", "finished_at"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT job_id, COUNT(*) FROM bench_side_effect GROUP BY job_id")
        effects = dict(cursor.fetchall())
    return Outcome(
        drain=max(finished.timestamp() for _, _, finished in times) - back,
        longest_wait=max(
            started.timestamp() - max(enqueued.timestamp(), back) for enqueued, started, _ in times
        ),
        duplicates=sum(1 for count in effects.values() if count > 1),
        missing=len(times) - len(effects),
    )


def one_case(server, redis_client, jobs: int, *, keep_data: bool):
    """Returns (the case's Outcome, the server now running)."""
    from bench.tasks import create_effect_table, tracked_effect
    from queueing.models import Job, JobStatus

    Job.objects.all().delete()
    create_effect_table()
    redis_client.flushdb()
    relay = start_relay(redis_client)
    try:
        for _ in range(jobs // 2):
            tracked_effect.delay(time.time())
        deadline = time.monotonic() + 60
        while Job.objects.filter(published_at=None).exists():
            if time.monotonic() > deadline:
                raise SystemExit("bench: the first half was never published")
            time.sleep(0.1)
        fate = "keeping" if keep_data else "losing"
        say(f"{jobs // 2} jobs published; stopping Redis ({fate} its data)")
        from redis import ConnectionError as RedisDown

        with contextlib.suppress(RedisDown):
            redis_client.shutdown(save=keep_data, nosave=not keep_data)
        server.process.wait(10)
        if not keep_data:
            (REDIS_DIR / "dump.rdb").unlink(missing_ok=True)
        for _ in range(jobs - jobs // 2):
            tracked_effect.delay(time.time())  # no error for the caller
        time.sleep(OUTAGE_SECONDS)
        from devstack import embedded_redis

        server = embedded_redis.start(REDIS_DIR, appendonly=False)
        back = time.time()
        worker = start_worker(concurrency=2)
        try:
            deadline = time.monotonic() + 600
            while Job.objects.filter(status=JobStatus.SUCCEEDED).count() < jobs:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: not drained within 10 minutes")
                time.sleep(0.2)
        finally:
            worker.stop()
        return outcome(back), server
    finally:
        relay.stop()


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    if os.environ.get("REDIS_URL"):
        raise SystemExit("bench: unset REDIS_URL: this bench stops and starts its own Redis")
    from devstack import embedded_redis

    (REDIS_DIR / "dump.rdb").unlink(missing_ok=True)
    server = embedded_redis.start(REDIS_DIR, appendonly=False)
    holder = [server]  # the running server changes with each restart
    stack.callback(lambda: holder[0].stop())  # noqa: PLW0108 - the server of the moment
    os.environ["REDIS_URL"] = server.url
    redis_client = prepare(stack)
    load_before = os.getloadavg()
    results: dict[str, list[Outcome]] = {"empty": [], "with data": []}
    for round_ in range(args.rounds):
        # Alternate which case goes first: on a shared machine the load drifts.
        for keep_data in (False, True) if round_ % 2 == 0 else (True, False):
            label = "with data" if keep_data else "empty"
            result, holder[0] = one_case(holder[0], redis_client, args.jobs, keep_data=keep_data)
            results[label].append(result)
            say(f"round {round_ + 1}, back {label}: {result}")
    from django.db import connection

    drains = {label: sorted(r.drain for r in rounds) for label, rounds in results.items()}
    ratio = statistics.median(drains["with data"]) / statistics.median(drains["empty"])
    print(
        f"{connection.vendor}: {args.jobs} jobs ({args.jobs // 2} published before the "
        f"outage, the rest during it), Redis down {OUTAGE_SECONDS:.0f} s, {args.rounds} "
        f"round(s); load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(1 min)"
    )
    print()
    print(
        "| Redis came back | drain, median (min-max) | longest wait after return, max "
        "| duplicate effects | missing |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, rounds in results.items():
        drain = drains[label]
        print(
            f"| {label} | {statistics.median(drain):.1f} s ({drain[0]:.1f}-{drain[-1]:.1f}) "
            f"| {max(r.longest_wait for r in rounds):.1f} s "
            f"| {sum(r.duplicates for r in rounds)} | {sum(r.missing for r in rounds)} |"
        )
    print()
    print(
        f"ratio of the median drains, with data / empty: {ratio:.2f} "
        f"(issue 19's bar: <= {TARGET_RATIO:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case")
    run_with_cleanup(run, parser.parse_args())


if __name__ == "__main__":
    main()

"""Drain time after a broker outage: Redis back with its data against Redis back empty.

Issue 19's bar: jobs enqueued during an outage must not be stranded when the broker comes
back *with* its data (AOF on, a partition, a hang), so the drain takes about as long as
when it comes back empty (where the relay republishes everything at once): within 20 %.

For each case, on the bench's own database and its own embedded Redis:

  1. the relay runs, no worker: N/2 tracked no-op jobs are enqueued and published
     (their messages wait in Redis);
  2. Redis stops (case "with data": SHUTDOWN SAVE, so it comes back with every message;
     case "empty": SHUTDOWN NOSAVE), N/2 more jobs are enqueued during the outage (the
     callers get no error; the jobs wait unpublished), and it stays down 3 s;
  3. Redis starts again and one worker (2 prefork processes) starts; the drain is the
     time from the broker's return to the last job's finish.

It prints both drains and their ratio, and how many jobs ran more than once (should be 0).

    .venv/bin/python bench/outages.py [--jobs 1000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/outages.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
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


def one_case(server, redis_client, jobs: int, *, keep_data: bool):
    """Returns (drain seconds, jobs run more than once, the server now running)."""
    import bench.tasks  # noqa: F401 - registers the bench tasks here
    from queueing.models import Job, JobStatus

    Job.objects.all().delete()
    redis_client.flushdb()
    relay = start_relay(redis_client)
    try:
        from bench.tasks import tracked_noop

        for _ in range(jobs // 2):
            tracked_noop.delay(time.time())
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
            tracked_noop.delay(time.time())  # no error for the caller
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
        last = max(Job.objects.values_list("finished_at", flat=True))
        twice = Job.objects.filter(attempts__gt=1).count()
        return last.timestamp() - back, twice, server
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
    results = {}
    for keep_data in (False, True):
        label = "with data" if keep_data else "empty"
        drain, twice, holder[0] = one_case(holder[0], redis_client, args.jobs, keep_data=keep_data)
        results[label] = drain
        say(f"back {label}: drained {args.jobs} jobs in {drain:.1f} s, {twice} ran twice")
    ratio = results["with data"] / results["empty"]
    print(f"jobs: {args.jobs} ({args.jobs // 2} published before the outage, the rest during it)")
    print(f"drain after Redis came back empty:     {results['empty']:.1f} s")
    print(f"drain after Redis came back with data: {results['with data']:.1f} s")
    print(f"ratio with data / empty: {ratio:.2f} (issue 19's bar: <= 1.20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    run_with_cleanup(run, parser.parse_args())


if __name__ == "__main__":
    main()

"""The data sync at scale: N customers (20,000 by default) in the Airtable fake, synced
into the database through pyairtable over HTTP, the provider guard and the record map.

Measured, in this process (the engine a ``datasync.run_sync`` job calls), with the
fake's and the guard's rate limits raised so the numbers are the sync's own cost:

  full            N records read (pages of 100) and created, with their record maps
  incremental     after C records changed in Airtable: the filtered read and C updates
  full, no change N records read again and compared by hash: no write
  dry run         the same read and compare, nothing written at all

At Airtable's real limit (5 requests/s per base, 100 records a page) reading is capped at
500 records/s; ``--airtable-rate 5`` measures that instead of the sync's own cost.

    .venv/bin/python bench/datasync.py [--records 20000] [--changes 50] [--airtable-rate 5]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/datasync .venv/bin/python bench/datasync.py

Database: like the other benchmarks (bench/throughput.py), a fresh one of its own
(``taskyard_bench_datasync`` on the given PostgreSQL server, else
var/bench-datasync.sqlite3).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import throughput  # noqa: E402
from bench.throughput import describe_database, prepare, run_with_cleanup, say  # noqa: E402

BASE = "appBENCH"
TABLE = "Customers"
T = TypeVar("T")
UNLIMITED = 1_000_000  # requests per second: "no limit" for the fake and the guard


def timed(label: str, work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    say(f"{label}: {elapsed:.1f}s")
    return result, elapsed


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    throughput.BENCH_DATABASE = "taskyard_bench_datasync"
    throughput.SQLITE_PATH = throughput.VAR_DIR / "bench-datasync.sqlite3"
    rate = args.airtable_rate or UNLIMITED
    os.environ["AIRTABLE_RATE_LIMIT"] = f"{rate}/s"
    redis_client = prepare(stack)
    redis_client.flushdb()  # the bench's own Redis: no guard state from an earlier run

    from django.utils import timezone

    from datasync import engine
    from datasync.models import RecordMap, SourceKind, SyncSource
    from devstack.fakes import airtable

    fake = stack.enter_context(
        airtable.serve(rate_limit=rate, rate_limit_penalty=1.0, last_modified_field="Modified")
    )
    rows = [
        {"Code": f"BX-{n:06d}", "Name": f"Bench customer {n}", "Email": f"bx{n}@example.org"}
        for n in range(args.records)
    ]
    ids = fake.seed(BASE, TABLE, rows, modified=timezone.now() - dt.timedelta(hours=1))
    source = SyncSource.objects.create(
        name="bench-airtable",
        kind=SourceKind.AIRTABLE,
        target="customers",
        config={
            "base": BASE,
            "table": TABLE,
            "modified_field": "Modified",
            "endpoint_url": fake.url,
            "defaults": {"region": "NL"},
        },
        field_map={
            "code": "Code",
            "name": "Name",
            "email": {"from": "Email", "transforms": ["strip", "lower"]},
        },
    )
    full, full_s = timed("full", lambda: engine.sync(source.name, "full"))
    for external_id in ids[: args.changes]:
        fake.change(BASE, TABLE, external_id, {"Name": f"Changed {external_id}"})
    incremental, incremental_s = timed(
        "incremental", lambda: engine.sync(source.name, "incremental")
    )
    again, again_s = timed("full, no change", lambda: engine.sync(source.name, "full"))
    dry, dry_s = timed("dry run", lambda: engine.sync(source.name, "full", dry_run=True))
    writes = sum(RecordMap.objects.values_list("writes", flat=True))
    n = args.records
    print(
        f"data sync of {n} Airtable records (fake over HTTP, pyairtable, provider guard at "
        f"{'no limit' if rate == UNLIMITED else f'{rate}/s'}) into {describe_database()}\n"
        f"  full             {full_s:7.1f} s  {n / full_s:8.0f} records/s  "
        f"(created {full.created})\n"
        f"  incremental      {incremental_s:7.1f} s  {incremental.read:8d} read, "
        f"{incremental.updated} updated after {args.changes} changes\n"
        f"  full, no change  {again_s:7.1f} s  {n / again_s:8.0f} records/s  "
        f"(unchanged {again.unchanged}, updated {again.updated})\n"
        f"  dry run          {dry_s:7.1f} s  {n / dry_s:8.0f} records/s\n"
        f"  writes           {writes} to customers in all (records + changes), "
        f"{fake.count('records.list')} list requests"
    )
    if dry.read != n or writes != n + args.changes:
        raise SystemExit("bench: the counts are off (see above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument(
        "--airtable-rate", type=int, default=0, help="requests/s (Airtable's own: 5)"
    )
    args = parser.parse_args()
    if args.records < 1 or not 0 <= args.changes <= args.records:
        parser.error("--records must be positive and --changes at most --records")
    run_with_cleanup(run, args)


if __name__ == "__main__":
    main()

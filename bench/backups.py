"""Backup, verification, restore and upkeep times with a large ledger (issue 17).

Fills a fresh bench database with N jobs (default 500,000; bench/dashboard.py's filler:
97 % succeeded, the rest dead, queued, scheduled, retrying, plus the last hour's
attempts), then times, once each: a backup (pg_dump custom format / SQLite backup API,
row counts in the same snapshot, manifest), its verification (restore into a scratch
database, count every table), a restore over the live database (``--clean``, one
transaction), and database upkeep (VACUUM (ANALYZE) / ANALYZE + PRAGMA optimize).

    .venv/bin/python bench/backups.py [--jobs 500000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/backups.py

On PostgreSQL it uses its own database ``taskyard_bench_backups`` (dropped and created).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import throughput  # noqa: E402
from bench.dashboard import fill  # noqa: E402
from bench.throughput import configure_environment, run_with_cleanup, say  # noqa: E402


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    # Not the shared taskyard_bench: other benches may run at the same time.
    throughput.BENCH_DATABASE = "taskyard_bench_backups"
    configure_environment(stack)
    import os

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from maintenance import upkeep
    from maintenance.backups import operations
    from maintenance.backups.verify import verify_backup
    from queueing.models import Job

    settings.BACKUP_DIR = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    say(f"migrating {os.environ['DATABASE_URL']}")
    call_command("migrate", verbosity=0, interactive=False)
    say(f"inserting {args.jobs} jobs")
    fill(args.jobs)
    jobs = Job.objects.count()

    timings: dict[str, float] = {}
    started = time.perf_counter()
    backup = operations.create_backup(verify=False)
    timings["backup (dump + counts + manifest)"] = time.perf_counter() - started
    started = time.perf_counter()
    backup = verify_backup(backup)
    timings["verification (scratch restore + counts)"] = time.perf_counter() - started
    assert backup.status == "verified", backup.error
    Job.objects.filter(status="succeeded").delete()
    started = time.perf_counter()
    counts = operations.restore_backup(Path(backup.path))
    timings["restore over the live database"] = time.perf_counter() - started
    assert counts["queueing_job"] == jobs, counts["queueing_job"]
    started = time.perf_counter()
    upkeep.run_upkeep()
    timings["upkeep (vacuum/analyze + report)"] = time.perf_counter() - started

    print()
    print(
        f"Backups with {jobs:,} jobs ({sum(backup.row_counts.values()):,} rows), "
        f"{throughput.describe_database()}, file {backup.size_bytes / 1024 / 1024:.1f} MiB"
    )
    for label, seconds in timings.items():
        print(f"{label:42} {seconds:8.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500_000)
    args = parser.parse_args()
    if args.jobs < 1000:
        parser.error("--jobs must be at least 1000")
    run_with_cleanup(run, args)


if __name__ == "__main__":
    main()

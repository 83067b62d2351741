"""The monthly billing run at scale: N customers (10,000 by default), each with a contract
and a month of weekly pickups, invoiced by the real jobs on a real worker.

Measured, with the relay running as in production and one ``celery worker`` on the
``billing`` queue (``--concurrency``, 1 as the seed declares the queue):

  seed            customers, contracts and service events written (bulk inserts)
  run             from enqueueing ``billing.run_billing`` to the last invoice committed:
                  the run job (one ``billing.bill_customer`` job per customer, enqueued in
                  its transaction) and every customer's job (lines, tax, a gap-free number,
                  the invoice and its reminders' jobs, committed with the job's success)
  invoices/s      customers / run
  peak memory     the largest resident set of the worker's processes (main and pool), and
                  of all of them together, sampled every 0.2 s

Charges and PDFs are left out: customers have no saved card (no Stripe call) and
BILLING_PDF_ON_ISSUE is off (the seed limits PDFs to 20 a minute; see docs/billing.md).

    .venv/bin/python bench/billing.py [--customers 10000] [--concurrency 1]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing .venv/bin/python bench/billing.py

Database: like the other benchmarks (bench/throughput.py), a fresh one of its own
(``taskyard_bench_billing`` on the given PostgreSQL server, else var/bench-billing.sqlite3).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import throughput  # noqa: E402
from bench.throughput import (  # noqa: E402
    BENCH_PROCESS_ENV,
    LOG_DIR,
    check_alive,
    describe_database,
    prepare,
    run_with_cleanup,
    say,
    start_relay,
)

PERIOD = "2026-11"
BATCH = 2000  # rows per bulk insert: a few MB per statement
STALL_TIMEOUT_SECONDS = 120.0  # no new invoice for this long: the run is stuck
MEMORY_SAMPLE_SECONDS = 0.2


def seed(customers: int) -> int:
    """Customers with one contract each and their November pickups; returns events."""
    from billing.models import Customer, EventSource, ServiceContract, ServiceEvent, TaxRule

    TaxRule.objects.create(
        region="NL", name="VAT", rate=Decimal("0.21"), valid_from=dt.date(2000, 1, 1)
    )
    for start in range(0, customers, BATCH):
        Customer.objects.bulk_create(
            Customer(
                code=f"B{n:06d}", name=f"Bench customer {n}", email=f"b{n}@example.org", region="NL"
            )
            for n in range(start, min(start + BATCH, customers))
        )
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), BATCH):
        ServiceContract.objects.bulk_create(
            ServiceContract(
                customer_id=customer_id,
                plan="Household",
                container_size="240L",
                base_monthly_fee=Decimal("12.50"),
                price_per_pickup=Decimal("6.50"),
                price_overweight_per_kg=Decimal("0.35"),
                # Every tenth started in the month: a prorated fee.
                start_date=dt.date(2026, 11, 1 + n % 30) if n % 10 == 0 else dt.date(2025, 1, 1),
            )
            for n, customer_id in enumerate(ids[start : start + BATCH], start=start)
        )
    events = 0
    contracts = list(ServiceContract.objects.values_list("id", "start_date"))
    for start in range(0, len(contracts), BATCH // 5):
        rows = []
        for n, (contract_id, begins) in enumerate(
            contracts[start : start + BATCH // 5], start=start
        ):
            day = max(begins, dt.date(2026, 11, 1))
            while day <= dt.date(2026, 11, 30):
                if day.weekday() == n % 5:
                    rows.append(
                        ServiceEvent(
                            contract_id=contract_id,
                            kind="pickup",
                            date=day,
                            source=EventSource.ROUTING,
                        )
                    )
                    if n % 4 == 0:
                        rows.append(
                            ServiceEvent(
                                contract_id=contract_id, kind="overweight", date=day,
                                quantity=Decimal("3.250"), source=EventSource.IMPORT,
                            )
                        )  # fmt: skip
                day += dt.timedelta(days=1)
        ServiceEvent.objects.bulk_create(rows)
        events += len(rows)
    return events


class MemoryWatch:
    """Peak resident set of a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_process = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            with contextlib.suppress(psutil.NoSuchProcess):
                main = psutil.Process(self.pid)
                sizes = []
                for process in [main, *main.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        sizes.append(process.memory_info().rss)
                self.peak_process = max(self.peak_process, *sizes)
                self.peak_total = max(self.peak_total, sum(sizes))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    throughput.BENCH_DATABASE = "taskyard_bench_billing"
    throughput.SQLITE_PATH = throughput.VAR_DIR / "bench-billing.sqlite3"
    os.environ["BILLING_PDF_ON_ISSUE"] = "0"
    redis_client = prepare(stack)
    from tests import harness

    redis_client.flushdb()  # the bench's own Redis (or database number): a clean start
    started = time.perf_counter()
    events = seed(args.customers)
    seeded = time.perf_counter() - started
    say(f"seeded {args.customers} customers, {events} service events in {seeded:.1f}s")

    relay = start_relay(redis_client)
    stack.callback(relay.stop)
    worker = harness.start_worker(
        concurrency=args.concurrency,
        queues=["billing"],
        env={**BENCH_PROCESS_ENV, "BILLING_PDF_ON_ISSUE": "0"},
        name=f"bench-billing-{uuid.uuid4().hex[:8]}@localhost",
        loglevel="WARNING",
        log_dir=LOG_DIR,
    )
    stack.callback(worker.stop)
    watch = MemoryWatch(worker.pid)
    stack.callback(watch.stop)

    import queueing
    from billing.models import Invoice

    begin = time.perf_counter()
    queueing.enqueue("billing.run_billing", kwargs={"period": PERIOD})
    count, last_change, last_count = 0, time.perf_counter(), 0
    while count < args.customers:
        time.sleep(0.5)
        check_alive(worker)
        count = Invoice.objects.count()
        if count != last_count:
            last_change, last_count = time.perf_counter(), count
        elif time.perf_counter() - last_change > STALL_TIMEOUT_SECONDS:
            raise SystemExit(f"bench: stuck at {count} invoices; see {worker.log_path}")
    elapsed = time.perf_counter() - begin
    watch.stop()
    numbers = Invoice.objects.values_list("number", flat=True)
    gap_free = sorted(int(n.split("-")[1]) for n in numbers) == list(range(1, args.customers + 1))
    print(
        f"billing run of {args.customers} customers ({events} service events) on "
        f"{describe_database()}, worker concurrency {args.concurrency}\n"
        f"  seed           {seeded:8.1f} s\n"
        f"  run            {elapsed:8.1f} s  (enqueue of the run job to the last invoice)\n"
        f"  invoices/s     {args.customers / elapsed:8.1f}\n"
        f"  peak memory    {watch.peak_process / 2**20:8.1f} MiB per worker process, "
        f"{watch.peak_total / 2**20:.1f} MiB main + pool\n"
        f"  invoices       {count}, numbers gap-free: {gap_free}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1, help="billing worker processes")
    args = parser.parse_args()
    if args.customers < 1 or args.concurrency < 1:
        parser.error("--customers and --concurrency must be positive")
    run_with_cleanup(run, args)


if __name__ == "__main__":
    main()

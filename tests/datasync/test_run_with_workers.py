"""A sync run on a real worker, SIGKILLed mid-way: the job's retry resumes the run at its
checkpoint and ends in the same state as an uninterrupted run, every record written
once. The run goes to the ``isolated`` queue, which only the workers started here consume.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import queueing
from billing.models import Customer
from datasync.models import RecordMap, RunStatus, SyncRun
from tests.datasync.conftest import BASE, TABLE, airtable_source, customer_row
from tests.harness import start_worker, wait_until

RECORDS = 3000  # 30 pages at the worker's 10 requests/s: about 3 s uninterrupted
QUEUE = "isolated"
WORKER_ENV = {"AIRTABLE_RATE_LIMIT": "10/s"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_run_killed_mid_way_resumes_and_writes_every_record_once(guard, airtable_fake, relay):
    rows = [customer_row(n) for n in range(RECORDS)]
    airtable_fake.seed(BASE, TABLE, rows, modified=timezone.now() - dt.timedelta(hours=1))
    source = airtable_source(airtable_fake.url)
    worker = start_worker(queues=[QUEUE], concurrency=1, env=WORKER_ENV)
    try:
        job = queueing.enqueue(
            "datasync.run_sync", kwargs={"source": source.name, "mode": "full"}, queue=QUEUE
        )

        def pages_committed() -> int:
            run = SyncRun.objects.filter(source=source).first()
            return int(run.checkpoint.get("pages", 0)) if run else 0

        wait_until(
            lambda: pages_committed() >= 8,
            timeout=60,
            interval=0.02,
            message=lambda: f"{pages_committed()} pages; worker log:\n{worker.log()}",
        )
        worker.kill()
        killed_at = Customer.objects.count()
        assert 0 < killed_at < RECORDS
        worker = start_worker(queues=[QUEUE], concurrency=1, env=WORKER_ENV)
        run = wait_until(
            lambda: SyncRun.objects.filter(source=source, status=RunStatus.SUCCEEDED).first(),
            timeout=90,
            interval=0.2,
            message=lambda: f"{Customer.objects.count()} customers; log:\n{worker.log()}",
        )
    finally:
        worker.stop()

    # One run, resumed by the job's second attempt, counted exactly.
    assert SyncRun.objects.count() == 1 and str(run.job_id) == str(job.id)
    assert queueing.Job.objects.get(id=job.id).attempt_rows.count() >= 2
    assert (run.read, run.created, run.updated, run.invalid) == (RECORDS, RECORDS, 0, 0)
    # The same end state as an uninterrupted run, every record written once.
    assert set(RecordMap.objects.values_list("writes", flat=True)) == {1}
    expected = {r["Code"]: (r["Name"], r["Email"]) for r in rows}
    assert {c.code: (c.name, c.email) for c in Customer.objects.all()} == expected
    # Pages read twice: at most the one in flight when the worker died.
    assert airtable_fake.count("records.list") <= RECORDS // 100 + 1

"""No job lost: killed workers, a Redis that stops or comes back empty, a job that
outlives the broker's visibility timeout. Real worker processes, real Redis."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import transaction

import queueing
from queueing.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.harness import start_worker, wait_until
from tests.sideeffects.models import SideEffect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def enqueue_many(count: int, prefix: str, *, queue: str | None = None, seconds: float = 0.0):
    with transaction.atomic():  # one commit; each job is published after it
        return [
            queueing.enqueue("tests.record", [f"{prefix}-{n}", seconds], queue=queue).id
            for n in range(count)
        ]


def wait_all_succeeded(ids: list, timeout: float, describe=lambda: "") -> None:
    def done() -> bool:
        return Job.objects.filter(id__in=ids, status=JobStatus.SUCCEEDED).count() == len(ids)

    def state() -> str:
        counts = Counter(Job.objects.filter(id__in=ids).values_list("status", flat=True))
        return f"all {len(ids)} jobs succeeded; now {dict(counts)}\n{describe()}"

    wait_until(done, timeout=timeout, interval=0.25, message=state)


def assert_each_ran_exactly_once(ids: list) -> None:
    per_job = Counter(SideEffect.objects.filter(job_id__in=ids).values_list("job_id", flat=True))
    assert len(per_job) == len(ids), "some jobs left no side effect"
    assert set(per_job.values()) == {1}, "some jobs committed their side effect twice"


def test_sigkill_of_a_worker_mid_run_loses_no_job(relay):
    worker = start_worker(queues=["isolated"], concurrency=4)
    try:
        ids = enqueue_many(500, "kill", queue="isolated", seconds=0.1)
        # Kill in the middle: a fifth done, and jobs running right now.
        wait_until(
            lambda: (
                SideEffect.objects.filter(job_id__in=ids).count() >= 100
                and Job.objects.filter(id__in=ids, status=JobStatus.RUNNING).exists()
            ),
            timeout=60,
            interval=0.01,
            message=worker.log,
        )
    finally:
        worker.kill()  # the whole process group: main process and pool, no cleanup
    killed_mid_run = set(
        Job.objects.filter(id__in=ids, status=JobStatus.RUNNING).values_list("id", flat=True)
    )

    replacement = start_worker(queues=["isolated"], concurrency=4)
    try:
        wait_all_succeeded(ids, timeout=240, describe=replacement.log)
    finally:
        replacement.stop()

    assert_each_ran_exactly_once(ids)
    lost = set(
        JobAttempt.objects.filter(job_id__in=ids, outcome=AttemptOutcome.LOST).values_list(
            "job_id", flat=True
        )
    )
    # A job running at the kill gets a LOST attempt when its lease is reaped, whether
    # that happened before the query above (a slow kill on a loaded machine) or after.
    assert lost, "the kill hit no running job; the test proved nothing"
    assert killed_mid_run <= lost  # each one was reaped, then ran again on the new worker


def test_jobs_enqueued_while_redis_is_down_all_run(broker, celery_worker, relay):
    broker.stop()
    ids = enqueue_many(200, "down")  # no error for the caller
    assert Job.objects.filter(id__in=ids, status=JobStatus.QUEUED).count() == 200

    broker.restart_empty()

    wait_all_succeeded(ids, timeout=120, describe=celery_worker.log)
    assert_each_ran_exactly_once(ids)


def test_relay_republishes_what_a_wiped_broker_lost(broker, relay):
    ids = enqueue_many(100, "wiped", queue="isolated")  # published; nobody consumes yet
    wait_until(
        lambda: Job.objects.filter(id__in=ids, published_at=None).count() == 0,
        timeout=10,
        message="every job published",
    )

    broker.restart_empty()  # Redis without persistence: every message is gone
    worker = start_worker(queues=["isolated"], concurrency=2)
    try:
        wait_all_succeeded(ids, timeout=120, describe=worker.log)
    finally:
        worker.stop()
    assert_each_ran_exactly_once(ids)


def test_job_outliving_visibility_timeout_and_lease_runs_once(relay):
    # Visibility timeout 2 s: Redis hands the message to the second pool process while
    # the first still runs it. The lease (3 s) is renewed every second meanwhile.
    worker = start_worker(
        queues=["isolated"],
        concurrency=2,
        env={"BROKER_VISIBILITY_TIMEOUT": "2", "TASK_TIME_LIMIT": "1"},
    )
    try:
        (job_id,) = enqueue_many(1, "long", queue="isolated", seconds=8)
        wait_until(
            lambda: f"job {job_id}: delivery dropped" in worker.log(last=1000),
            timeout=30,
            message=lambda: f"the redelivery to be dropped\n{worker.log()}",
        )
        wait_all_succeeded([job_id], timeout=30, describe=worker.log)
    finally:
        worker.stop()

    job = Job.objects.get(id=job_id)
    assert job.attempts == 1
    assert [a.outcome for a in job.attempt_rows.all()] == [AttemptOutcome.SUCCEEDED]
    assert_each_ran_exactly_once([job_id])

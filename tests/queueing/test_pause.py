"""Pause and resume: cluster-wide, durable, and respected by workers started later."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import transaction

import queueing
from config.celery import app as celery_app
from queueing.control.pause import PAUSED_KEY, UnknownQueueError, pause_queue, resume_queue
from queueing.ledger.enqueue import PublishSpec, publish
from queueing.models import Job, JobStatus, QueueState
from tests.harness import start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def statuses(ids) -> dict:
    return dict(Job.objects.filter(id__in=ids).values_list("id", "status"))


def consumed_by(worker) -> set[str]:
    # A fresh connection: a pooled one may be stale from a test that restarted Redis.
    with celery_app.connection_for_write() as connection:
        inspect = celery_app.control.inspect(
            destination=[worker.name], timeout=2, connection=connection
        )
        replies = inspect.active_queues()
    return {queue["name"] for queue in (replies or {}).get(worker.name, [])}


def test_a_paused_queue_runs_nothing_until_resumed_across_a_worker_restart(relay, celery_worker):
    worker = start_worker(queues=["isolated", "default"], concurrency=2)
    try:
        pause_queue("isolated", reason="billing freeze")
        worker.stop()
        worker = start_worker(queues=["isolated", "default"], concurrency=2)
        assert "queue isolated is paused" in worker.log()
        with transaction.atomic():
            held = [
                queueing.enqueue("tests.record", [f"held-{n}"], queue="isolated").id
                for n in range(5)
            ]
        # A job on a running queue of the same worker finishes; the held ones stay put.
        sentinel = queueing.enqueue("tests.record", ["sentinel"], queue="default")
        wait_until(
            lambda: Job.objects.filter(id=sentinel.id, status=JobStatus.SUCCEEDED).exists(),
            timeout=30,
            message=worker.log,
        )
        assert set(statuses(held).values()) == {JobStatus.QUEUED}
        assert Job.objects.filter(id__in=held, attempts__gt=0).count() == 0

        resume_queue("isolated")

        wait_until(
            lambda: set(statuses(held).values()) == {JobStatus.SUCCEEDED},
            timeout=60,
            message=lambda: f"{statuses(held)}\n{worker.log()}",
        )
        assert "isolated" in consumed_by(worker)
        # A worker never started for the queue does not start consuming it on resume.
        assert "isolated" not in consumed_by(celery_worker)
    finally:
        resume_queue("isolated")
        worker.stop()


def test_a_prefetched_job_of_a_paused_queue_goes_back_without_an_attempt(relay):
    worker = start_worker(queues=["isolated"], concurrency=1)
    try:
        with transaction.atomic():
            job = queueing.enqueue("tests.record", ["prefetched"], queue="isolated", countdown=3600)
        Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED, run_at=None)
        pause_queue("isolated")
        # A worker that missed the broadcast still consumes the queue.
        celery_app.control.add_consumer("isolated", destination=[worker.name], reply=True)
        publish(PublishSpec.of(job))

        wait_until(
            lambda: f"job {job.id}: its queue is paused" in worker.log(last=500),
            timeout=30,
            message=worker.log,
        )
        job.refresh_from_db()
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)

        resume_queue("isolated")
        wait_until(
            lambda: Job.objects.filter(id=job.id, status=JobStatus.SUCCEEDED).exists(),
            timeout=30,
            message=worker.log,
        )
    finally:
        resume_queue("isolated")
        worker.stop()


def test_the_pause_survives_a_wiped_redis(relay):
    pause_queue("isolated")
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        client.delete(PAUSED_KEY)
        # The relay copies the durable pause back into Redis on its next tick.
        wait_until(lambda: client.sismember(PAUSED_KEY, "isolated"), timeout=10)
        assert QueueState.objects.get(name="isolated").paused
    finally:
        resume_queue("isolated")


def test_unknown_queue_is_refused():
    with pytest.raises(UnknownQueueError, match="unknown queue 'fast'"):
        pause_queue("fast")
    assert not QueueState.objects.exists()

"""A job whose pool process is SIGKILLed mid-run runs again, and ends succeeded once.

Plain Celery defaults lose such a task (see the note on issue 2). Here the job's lease
expires, the relay's reaper queues it again, and another process runs it.
"""

from __future__ import annotations

import os
import signal

import pytest
from celery.result import AsyncResult

from queueing.models import AttemptOutcome, Job, JobStatus
from tests.harness import wait_until
from tests.worker_tasks import KEY_PREFIX, slow_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_job_of_a_killed_pool_process_runs_again(celery_worker, relay, redis_client):
    key = "killed-pool"
    result = slow_run.delay(key, 2)
    started = f"{KEY_PREFIX}:{key}:started"
    first_pid = int(
        wait_until(
            lambda: redis_client.lindex(started, 0),
            timeout=30,
            message=lambda: f"the task to start\n{celery_worker.log()}",
        )
    )

    os.kill(first_pid, signal.SIGKILL)

    assert AsyncResult(result.id).get(timeout=60)["pid"] != first_pid
    pids = [int(pid) for pid in redis_client.lrange(started, 0, -1)]
    assert pids[0] == first_pid and len(pids) == 2
    assert redis_client.get(f"{KEY_PREFIX}:{key}:finished") == "1"
    job = Job.objects.get(id=result.id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert [a.outcome for a in job.attempt_rows.all()] == [
        AttemptOutcome.LOST,
        AttemptOutcome.SUCCEEDED,
    ]
    assert celery_worker.is_alive()

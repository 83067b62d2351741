"""The delivery settings of the foundation: a task whose pool process is SIGKILLed runs
again on another process instead of being lost (acks_late + retry/reject on worker lost).
Plain Celery defaults lose it; see the note on issue 2."""

from __future__ import annotations

import os
import signal

import pytest
from celery.result import AsyncResult

from tests.harness import wait_until
from tests.worker_tasks import KEY_PREFIX, slow_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_task_of_a_killed_pool_process_runs_again(celery_worker, redis_client):
    key = "killed-pool"
    result = slow_run.delay(key, 3)
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
    assert celery_worker.is_alive()

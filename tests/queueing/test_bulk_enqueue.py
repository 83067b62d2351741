"""enqueue_many / Task.bulk: many jobs in one transaction, multi-row INSERTs and one
publish round trip; every job runs exactly once; bad input writes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import queueing
from queueing import inflight
from queueing.broker import shared_redis
from queueing.ledger.bulk import MAX_BULK_JOBS
from queueing.ledger.enqueue import InvalidArguments, UnknownTask, broker_queue_keys
from queueing.models import Job, JobStatus
from tests.harness import wait_until
from tests.sideeffects.models import SideEffect
from tests.worker_tasks import record

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bulk_runs_every_job_exactly_once(celery_worker):
    keys = [f"bulk-{n}" for n in range(300)]
    jobs = record.bulk([[key] for key in keys])
    assert [job.args for job in jobs] == [[key] for key in keys]
    ids = [job.id for job in jobs]
    wait_until(
        lambda: Job.objects.filter(id__in=ids, status=JobStatus.SUCCEEDED).count() == len(ids),
        timeout=60,
        message=celery_worker.log,
    )
    effects = sorted(SideEffect.objects.filter(job_id__in=ids).values_list("key", flat=True))
    assert effects == sorted(keys)  # each once


def test_one_insert_and_one_publish_round_trip_after_commit(published):
    """One COPY on PostgreSQL (multi-row INSERTs elsewhere), then every message."""
    client = shared_redis()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        jobs = queueing.enqueue_many("queueing.ping", [[n] for n in range(1500)], queue="isolated")
        assert published == []  # nothing before commit
    inserts = [q for q in queries.captured_queries if q["sql"].startswith(("INSERT", "COPY"))]
    if connection.vendor == "postgresql":
        assert len(inserts) == 1 and inserts[0]["sql"].startswith("COPY")
    else:  # SQLite binds at most 999 parameters per statement: ~33 job rows
        assert len(inserts) <= 1500 // 30
    assert sorted(published) == sorted(str(job.id) for job in jobs)
    # Every message is in the broker and indexed as sent (queueing/inflight.py).
    keys = broker_queue_keys("isolated")
    assert sum(client.llen(key) for key in keys) == 1500
    sent = client.smismember(inflight.SENT_KEY, [str(job.id) for job in jobs])
    assert all(sent)
    client.delete(*keys)


def test_a_rollback_leaves_no_job_and_no_message(published):
    with pytest.raises(RuntimeError), transaction.atomic():
        queueing.enqueue_many("queueing.ping", [[1], [2]], queue="isolated")
        raise RuntimeError("the view failed")
    assert not Job.objects.exists() and published == []


def test_a_bad_call_names_its_index_and_nothing_is_written(published):
    with pytest.raises(InvalidArguments, match="call 2: arguments must be JSON"):
        queueing.enqueue_many("queueing.ping", [[1], [2], [object()]])
    with pytest.raises(InvalidArguments, match="2 calls and kwargs_list 1"):
        queueing.enqueue_many("queueing.ping", [[1], [2]], kwargs_list=[{}])
    with pytest.raises(InvalidArguments, match="list of argument lists"):
        queueing.enqueue_many("queueing.ping", "abc")
    with pytest.raises(InvalidArguments, match="limit is"):
        queueing.enqueue_many("queueing.ping", [[]] * (MAX_BULK_JOBS + 1))
    with pytest.raises(UnknownTask):
        queueing.enqueue_many("no.such.task", [[1]])
    assert not Job.objects.exists() and published == []


def test_options_apply_to_every_job_and_a_delay_schedules_them(published):
    later = timezone.now() + dt.timedelta(hours=1)
    jobs = queueing.enqueue_many(
        "queueing.ping", [[1], [2]], kwargs_list=None, priority=7, run_at=later
    )
    rows = Job.objects.filter(id__in=[job.id for job in jobs])
    assert {(row.status, row.priority, row.run_at) for row in rows} == {
        (JobStatus.SCHEDULED, 7, later)
    }
    assert published == []  # the relay publishes them when due


def test_calls_with_a_unique_key_template_keep_one_job_per_key():
    # sampleapp.plan_collection declares unique_key="collection:{route_id}".
    jobs = queueing.enqueue_many(
        "sampleapp.plan_collection", [[], [], []], kwargs_list=[{"route_id": r} for r in (7, 7, 8)]
    )
    assert jobs[0].id == jobs[1].id != jobs[2].id  # the second call got the holder
    assert Job.objects.filter(task_name="sampleapp.plan_collection").count() == 2


def test_copied_messages_are_the_message_celery_sends(published):
    """A bulk sends its first message through Celery's send_task and copies it for the
    others (queueing/ledger/wire.py): each copy must be what send_task would have sent."""
    client = shared_redis()
    keys = broker_queue_keys("isolated")
    client.delete(*keys)
    jobs = queueing.enqueue_many(
        "queueing.ping", [["a"], ["b"], ["c"]], queue="isolated", priority=4
    )
    raw = [message for key in keys for message in client.lrange(key, 0, -1)]
    client.delete(*keys)
    messages = {m["headers"]["id"]: m for m in map(json.loads, raw)}
    assert set(messages) == {str(job.id) for job in jobs}
    first, *copies = (messages[str(job.id)] for job in jobs)
    per_message = {"id", "argsrepr", "correlation_id", "delivery_tag"}
    for job, message in zip(jobs[1:], copies, strict=True):
        for part in ("headers", "properties"):
            same = {k: v for k, v in message[part].items() if k not in per_message}
            assert same == {k: v for k, v in first[part].items() if k not in per_message}
        assert message["properties"]["correlation_id"] == str(job.id)
        assert message["properties"]["delivery_tag"] != first["properties"]["delivery_tag"]
        assert message["headers"]["argsrepr"] == repr(job.args)
        args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
        assert (args, kwargs) == (job.args, {})
        assert embed == json.loads(base64.b64decode(first["body"]))[2]
        assert {k: v for k, v in message.items() if k not in ("headers", "properties", "body")} == {
            k: v for k, v in first.items() if k not in ("headers", "properties", "body")
        }
    assert first["headers"]["task"] == "queueing.ping" and first["properties"]["priority"] == 4
    assert sorted(published) == sorted(messages)  # Celery's publish signal, for each

"""Enqueue: a row in the caller's transaction, a message only after commit, and clear
errors with nothing written for bad input."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

import queueing
from queueing.ledger.enqueue import (
    ArgumentsTooLarge,
    EnqueueError,
    InvalidArguments,
    UnknownQueue,
    UnknownTask,
)
from queueing.models import Job, JobStatus
from queueing.tasks import ping

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_inserts_the_job_and_publishes_after_commit(published):
    with transaction.atomic():
        job = queueing.enqueue("queueing.ping", ["hi"], queue="default", priority=3)
        assert Job.objects.filter(id=job.id).exists()
        assert published == []  # not before commit
    assert published == [str(job.id)]
    job.refresh_from_db()
    assert (job.status, job.task_name, job.queue, job.args, job.priority) == (
        JobStatus.QUEUED,
        "queueing.ping",
        "default",
        ["hi"],
        3,
    )
    assert job.attempts == 0 and job.max_attempts == 5
    assert job.published_at is not None


def test_delay_from_a_view_goes_through_the_ledger(published):
    result = ping.delay("from delay")
    job = Job.objects.get(id=result.id)
    # Published at commit: a session worker (started by earlier tests) may already run it.
    assert job.args == ["from delay"] and job.status != JobStatus.SCHEDULED
    assert job.origin == "ledger"
    assert published == [result.id]


def test_rollback_leaves_no_job_and_no_message(published):
    with pytest.raises(RuntimeError), transaction.atomic():
        job = queueing.enqueue("queueing.ping", ["never"])
        raise RuntimeError("the view failed after enqueueing")
    assert not Job.objects.filter(id=job.id).exists()
    assert published == []


def test_countdown_and_run_at_keep_the_job_in_the_ledger(published):
    later = queueing.enqueue("queueing.ping", countdown=3600)
    week = queueing.enqueue("queueing.ping", run_at=timezone.now() + dt.timedelta(days=7))
    iso = queueing.enqueue("queueing.ping", run_at="2099-01-01T00:00:00+00:00")
    for job in (later, week, iso):
        job.refresh_from_db()
        assert job.status == JobStatus.SCHEDULED and job.published_at is None
    assert published == []  # no ETA message held in some worker's memory
    assert later.run_at - later.enqueued_at == dt.timedelta(seconds=3600)


def test_tasks_route_to_their_app_queue():
    job = queueing.enqueue("queueing.ping")
    assert job.queue == "default"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: queueing.enqueue("no.such.task"), UnknownTask, "unknown task 'no.such.task'"),
        (lambda: queueing.enqueue(""), UnknownTask, "not a task"),
        (lambda: queueing.enqueue("queueing.ping", queue="fast"), UnknownQueue, "'fast'"),
        (
            lambda: queueing.enqueue("queueing.ping", [dt.date(2026, 1, 1)]),
            InvalidArguments,
            "JSON",
        ),
        (lambda: queueing.enqueue("queueing.ping", [{1, 2}]), InvalidArguments, "JSON"),
        (lambda: queueing.enqueue("queueing.ping", [float("nan")]), InvalidArguments, "JSON"),
        (lambda: queueing.enqueue("queueing.ping", "abc"), InvalidArguments, "list or tuple"),
        (lambda: queueing.enqueue("queueing.ping", [], [1]), InvalidArguments, "mapping"),
        (
            lambda: queueing.enqueue("queueing.ping", ["x" * (300 * 1024)]),
            ArgumentsTooLarge,
            "limit is 262144",
        ),
        (lambda: queueing.enqueue("queueing.ping", priority=12), EnqueueError, "outside 0-9"),
        (lambda: queueing.enqueue("queueing.ping", priority="high"), EnqueueError, "integer"),
        (lambda: queueing.enqueue("queueing.ping", countdown=-5), EnqueueError, "negative"),
        (lambda: queueing.enqueue("queueing.ping", countdown="soon"), EnqueueError, "seconds"),
        (
            lambda: queueing.enqueue("queueing.ping", run_at=dt.datetime(2030, 1, 1)),
            EnqueueError,
            "timezone-aware",
        ),
        (lambda: queueing.enqueue("queueing.ping", run_at="tomorrow"), EnqueueError, "ISO 8601"),
        (
            lambda: queueing.enqueue("queueing.ping", countdown=1, run_at=timezone.now()),
            EnqueueError,
            "not both",
        ),
        (lambda: queueing.enqueue("queueing.ping", max_attempts=0), EnqueueError, "positive"),
        (lambda: queueing.enqueue("queueing.ping", unique_key=" "), EnqueueError, "unique_key"),
        (
            lambda: ping.apply_async(["x"], serializer="pickle"),
            EnqueueError,
            "only sends JSON",
        ),
        (lambda: ping.apply_async(["x"], exchange_typo=1), EnqueueError, "not supported"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(call, error, message, published):
    before = set(Job.objects.values_list("id", flat=True))
    with pytest.raises(error, match=message):
        call()
    assert set(Job.objects.values_list("id", flat=True)) == before
    assert published == []


def test_broker_down_at_commit_costs_the_caller_nothing(broker, published):
    broker.stop()
    job = queueing.enqueue("queueing.ping", ["while redis is down"])  # no exception
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.published_at is None  # what the relay looks for


def test_unique_key_returns_the_active_job():
    first = queueing.enqueue("queueing.ping", ["a"], unique_key="invoice:42", queue="isolated")
    second = queueing.enqueue("queueing.ping", ["b"], unique_key="invoice:42", queue="isolated")
    assert second.id == first.id
    assert Job.objects.count() == 1
    Job.objects.filter(id=first.id).update(status=JobStatus.SUCCEEDED)
    third = queueing.enqueue("queueing.ping", ["c"], unique_key="invoice:42", queue="isolated")
    assert third.id != first.id  # only active jobs hold the key


def test_unique_key_is_race_free_under_concurrent_enqueuers():
    start = threading.Barrier(20)
    ids: list[uuid.UUID] = []
    errors: list[BaseException] = []

    def enqueue_one(n: int) -> None:
        try:
            start.wait()
            # isolated: no worker may run (and release) the job while the others race
            job = queueing.enqueue("queueing.ping", [n], unique_key="route:7", queue="isolated")
            ids.append(job.id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue_one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1
    assert Job.objects.filter(unique_key="route:7").count() == 1


def test_replace_debounces_a_job_that_has_not_started(published):
    first = queueing.enqueue("queueing.ping", ["v1"], unique_key="sync:7", countdown=60)
    second = queueing.enqueue(
        "queueing.ping", ["v2"], unique_key="sync:7", countdown=60, on_conflict="replace"
    )
    assert second.id != first.id
    first.refresh_from_db()
    assert first.status == JobStatus.CANCELLED and first.last_error_class == "taskyard.Replaced"
    assert list(Job.objects.filter(unique_key="sync:7", status=JobStatus.SCHEDULED)) == [second]


def test_replace_leaves_a_running_holder_alone():
    holder = queueing.enqueue("queueing.ping", ["v1"], unique_key="route:9", queue="isolated")
    Job.objects.filter(id=holder.id).update(status=JobStatus.RUNNING)
    again = queueing.enqueue(
        "queueing.ping", ["v2"], unique_key="route:9", on_conflict="replace", queue="isolated"
    )
    assert again.id == holder.id
    assert Job.objects.filter(unique_key="route:9").count() == 1


def test_concurrent_replacers_leave_exactly_one_active_job():
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def replace_one(n: int) -> None:
        try:
            start.wait()
            queueing.enqueue(
                "queueing.ping", [n], unique_key="deb:1", countdown=60, on_conflict="replace"
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=replace_one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Job.objects.filter(unique_key="deb:1", status=JobStatus.SCHEDULED).count() == 1


def test_a_concurrency_key_the_arguments_cannot_fill_is_refused():
    with pytest.raises(InvalidArguments, match="needs argument 'customer'"):
        queueing.enqueue("tests.exclusive", [], {"seconds": 1})
    assert not Job.objects.exists()


def test_platform_maintenance_jobs_route_to_the_maintenance_queue():
    assert queueing.enqueue("queueing.prune_jobs").queue == "maintenance"

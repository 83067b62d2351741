"""Many jobs of one task in one go: one transaction, multi-row INSERTs, one publish.

``enqueue_many(task, args_list)`` is :func:`queueing.enqueue` for a list of calls, the
way Sidekiq's ``push_bulk``, BullMQ's ``addBulk`` and Oban's ``insert_all`` are: every
call is checked first (an EnqueueError names the call's index and nothing is written),
then the rows go in with ``bulk_create`` inside the caller's transaction (or one of
their own), and after commit every due job's message and in-flight index entry go to
Redis in a single pipeline (queueing/ledger/enqueue.py ``publish_many``). A publish that
fails leaves the jobs unpublished for the relay, like a single enqueue.

Calls with a unique key (given, or the task's template) take the single-job path, one by
one inside the same transaction: a conflict needs its own savepoint and answer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from celery import Task
from django.db import connection, transaction
from django.utils import timezone

from queueing.ledger.enqueue import (
    EnqueueError,
    InvalidArguments,
    PublishSpec,
    build_job,
    enqueue,
    publish_after_commit,
    resolve_task,
)
from queueing.ledger.wake import nudge_relay_if_soon
from queueing.models import Job, JobStatus

logger = logging.getLogger(__name__)

# Rows per INSERT statement. PostgreSQL's protocol takes at most 65,535 parameters per
# statement with server-side binding, and a job row has about 25 columns; 2,000 rows stay
# well under it and keep each statement a few hundred kilobytes.
BULK_INSERT_ROWS = 2000
# One call can enqueue at most this many jobs (one transaction, one pipeline in memory):
# larger imports go in several calls.
MAX_BULK_JOBS = 100_000


def enqueue_many(
    task: str | Task,
    args_list: Iterable[Sequence[Any]],
    *,
    kwargs_list: Iterable[Mapping[str, Any]] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    run_at: dt.datetime | str | None = None,
    countdown: float | None = None,
    max_attempts: int | None = None,
    user=None,
) -> list[Job]:
    """Enqueue one job of ``task`` per entry of ``args_list`` (its positional arguments;
    ``kwargs_list``, when given, the keyword arguments of each, same length). The options
    apply to every job. Returns the jobs in order (for a call whose unique key is held,
    the holder, as :func:`queueing.enqueue` does). Raises EnqueueError before anything is
    written."""
    celery_task = resolve_task(task)
    calls = _pair(args_list, kwargs_list)
    now = timezone.now()
    prepared = []
    for index, (args, kwargs) in enumerate(calls):
        try:
            prepared.append(
                build_job(
                    celery_task,
                    args,
                    kwargs,
                    queue=queue,
                    priority=priority,
                    run_at=run_at,
                    countdown=countdown,
                    max_attempts=max_attempts,
                    user=user,
                    now=now,
                )
            )
        except EnqueueError as exc:
            raise type(exc)(f"call {index}: {exc}") from None

    jobs: list[Job] = []
    with transaction.atomic(savepoint=False):
        plain = [job for job, _ in prepared if job.unique_key is None]
        insert_jobs(plain)
        for (job, when), (args, kwargs) in zip(prepared, calls, strict=True):
            if job.unique_key is None:
                jobs.append(job)
                continue
            jobs.append(
                enqueue(
                    celery_task,
                    args,
                    kwargs,
                    queue=job.queue,
                    priority=job.priority,
                    run_at=when,
                    unique_key=job.unique_key,
                    max_attempts=job.max_attempts,
                    user=user,
                    job_id=job.id,
                )
            )
        specs = [PublishSpec.of(job) for job in plain if job.status == JobStatus.QUEUED]
        if specs:
            transaction.on_commit(lambda: publish_after_commit(specs), robust=True)
        scheduled = [job.run_at for job in plain if job.run_at is not None]
        if scheduled:
            nudge_relay_if_soon(min(scheduled))
    return jobs


# Job fields that differ from one job of a bulk to the next; the others are converted to
# their database form once per bulk.
_PER_JOB_FIELDS = frozenset({"id", "args", "kwargs"})


def insert_jobs(jobs: list[Job]) -> None:
    """INSERT ``jobs`` in the current transaction: on PostgreSQL one COPY (the fastest
    way in, and one statement whatever the count), elsewhere multi-row INSERTs."""
    if not jobs:
        return
    first = jobs[0]
    # A route that depends on the arguments can give jobs of one bulk different queues.
    if connection.vendor != "postgresql" or any(job.queue != first.queue for job in jobs):
        Job.objects.bulk_create(jobs, batch_size=BULK_INSERT_ROWS)
        return
    fields = list(Job._meta.concrete_fields)
    # Constant columns converted once: a bulk shares task, queue, status, times...
    constant = {
        f.attname: f.get_db_prep_save(f.pre_save(first, add=True), connection)
        for f in fields
        if f.name not in _PER_JOB_FIELDS
    }
    varying = [f for f in fields if f.name in _PER_JOB_FIELDS]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    table = connection.ops.quote_name(Job._meta.db_table)
    with (
        connection.cursor() as cursor,
        # Django's cursor (not psycopg's): in DEBUG the COPY is logged like a query.
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for job in jobs:
            row = dict(constant)
            for field in varying:
                row[field.attname] = field.get_db_prep_save(getattr(job, field.attname), connection)
            copy.write_row([row[f.attname] for f in fields])


def _pair(
    args_list: Iterable[Sequence[Any]], kwargs_list: Iterable[Mapping[str, Any]] | None
) -> list[tuple[Any, Any]]:
    if isinstance(args_list, str | bytes | Mapping) or not isinstance(args_list, Iterable):
        raise InvalidArguments("args_list must be a list of argument lists")
    args = list(args_list)
    if kwargs_list is None:
        kwargs: list[Any] = [{}] * len(args)
    else:
        if isinstance(kwargs_list, str | bytes | Mapping) or not isinstance(kwargs_list, Iterable):
            raise InvalidArguments("kwargs_list must be a list of mappings")
        kwargs = list(kwargs_list)
        if not args:
            args = [()] * len(kwargs)
        if len(kwargs) != len(args):
            raise InvalidArguments(
                f"args_list has {len(args)} calls and kwargs_list {len(kwargs)}: give one "
                "entry per call in each"
            )
    if len(args) > MAX_BULK_JOBS:
        raise InvalidArguments(
            f"{len(args)} jobs in one call; the limit is {MAX_BULK_JOBS} (MAX_BULK_JOBS): "
            "enqueue them in several calls"
        )
    return list(zip(args, kwargs, strict=True))

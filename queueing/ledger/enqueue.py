"""Enqueue and publish: the write side of the job ledger.

A job is a ``Job`` row inserted in the caller's transaction; its message is published
only after that transaction commits (``transaction.on_commit``). So a rollback leaves no
job and no execution, and a broker that is down at commit costs the caller nothing: the
publish fails quietly, the row stays unpublished, and the relay (queueing/relay/loop.py)
publishes it when the broker answers again. See docs/job-ledger.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import QueueNotFound
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from queueing import inflight
from queueing.broker import LEDGER_HEADER, shared_redis
from queueing.ledger import wire
from queueing.ledger.keys import concurrency_key_for, fill_key
from queueing.ledger.outage import OutageLog
from queueing.ledger.retry import retry_policy_for
from queueing.ledger.transitions import cancel_waiting
from queueing.ledger.wake import nudge_relay_if_soon
from queueing.models import ACTIVE_STATUSES, Job, JobOrigin, JobStatus
from queueing.specs import queue_specs

logger = logging.getLogger(__name__)

PRIORITY_MIN, PRIORITY_MAX = 0, 9

# Celery publish options stored on the job and passed on at every publish.
PASSTHROUGH_OPTIONS = frozenset(
    {
        "link",
        "link_error",
        "headers",
        "shadow",
        "time_limit",
        "soft_time_limit",
        "expires",
        "chain",
        "group_id",
        "group_index",
        "chord",
        "root_id",
        "parent_id",
    }
)
# Options that only make sense for an immediate publish from this process; the ledger
# publishes later, from wherever, so they are accepted and dropped.
IGNORED_OPTIONS = frozenset(
    {
        "retry",
        "retry_policy",
        "producer",
        "connection",
        "add_to_parent",
        "routing_key",
        "exchange",
        "exchange_type",
        "mandatory",
        "immediate",
        "ignore_result",
    }
)


class EnqueueError(ValueError):
    """A job that cannot be enqueued; nothing was written."""


class UnknownTask(EnqueueError):
    pass


class UnknownQueue(EnqueueError):
    pass


class InvalidArguments(EnqueueError):
    pass


class ArgumentsTooLarge(InvalidArguments):
    pass


def _app():
    from config.celery import app

    return app


def import_task_modules() -> None:
    """Import every task module (CELERY_IMPORTS and the apps' tasks.py): a worker has,
    a web process may not have yet when it first enqueues or lists tasks by name."""
    app = _app()
    app.loader.import_default_modules()
    app.autodiscover_tasks(force=True)


def resolve_task(task: str | Task) -> Task:
    """The registered Celery task for a name or task object, or UnknownTask."""
    app = _app()
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise UnknownTask(f"not a task: {task!r}")
    if name not in app.tasks:
        import_task_modules()
    try:
        return app.tasks[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}: no registered task has that name") from None


def resolve_queue(task: Task, queue: str | None, args: list, kwargs: dict) -> str:
    """The queue a job goes to, first found of: the call's ``queue``; the task's declared
    queue (``job(queue=...)`` or ``@shared_task(queue=...)``); a route in
    CELERY_TASK_ROUTES; the queue named after the Django app that defines the task (its
    label), when declared; the default queue. UnknownQueue when the answer is
    not a declared queue."""
    name = queue or getattr(task, "declared_queue", None) or getattr(task, "queue", None)
    if not name:
        router = _app().amqp.router
        route = router.lookup_route(task.name, args, kwargs, {}, task) if router.routes else None
        if route:
            try:
                name = router.expand_destination(route)["queue"].name
            except QueueNotFound as exc:
                raise UnknownQueue(
                    f"task {task.name!r} routes to an undeclared queue: {exc}"
                ) from None
    if not name:
        config = apps.get_containing_app_config(getattr(task, "__module__", "") or "")
        name = config.label if config and config.label in settings.TASKYARD_QUEUES else None
    name = name or settings.CELERY_TASK_DEFAULT_QUEUE
    if name not in settings.TASKYARD_QUEUES:
        raise UnknownQueue(
            f"unknown queue {name!r}; declared queues: {', '.join(settings.TASKYARD_QUEUES)}"
        )
    return name


def _check_json(args: list, kwargs: dict, options: dict) -> None:
    try:
        encoded = json.dumps([args, kwargs, options], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"arguments must be JSON values: {exc}") from None
    size = len(encoded.encode())
    if size > settings.JOB_ARGS_MAX_BYTES:
        raise ArgumentsTooLarge(
            f"arguments are {size} bytes; the limit is {settings.JOB_ARGS_MAX_BYTES} "
            "(JOB_ARGS_MAX_BYTES): pass ids, not data"
        )


def _check_arguments(
    task: Task, args: Any, kwargs: Any, options: Mapping[str, Any] | None
) -> tuple[list, dict, dict]:
    """Arguments as JSON-ready list and dict, and the pass-through options; or
    InvalidArguments saying what is wrong."""
    if isinstance(args, str | bytes | Mapping) or not isinstance(args, Iterable):
        raise InvalidArguments(f"args must be a list or tuple, not {type(args).__name__}")
    args = list(args)
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidArguments(f"kwargs must be a mapping, not {type(kwargs).__name__}")
    kwargs = dict(kwargs or {})
    if any(not isinstance(key, str) for key in kwargs):
        raise InvalidArguments("kwargs keys must be strings")
    passthrough = _split_options(options or {})
    _check_json(args, kwargs, passthrough)
    try:
        concurrency_key_for(task, args, kwargs)
    except ImproperlyConfigured as exc:
        raise InvalidArguments(str(exc)) from None
    return args, kwargs, passthrough


def _declared_unique_key(task: Task, args: list, kwargs: dict) -> str | None:
    try:
        return fill_key(task, "unique_key", args, kwargs)
    except ImproperlyConfigured as exc:
        raise InvalidArguments(str(exc)) from None


def default_priority(task: Task, queue_name: str) -> int:
    """The priority of a job enqueued without one: the task's ``priority`` attribute,
    else its queue's declared default, else TASKYARD_DEFAULT_PRIORITY (0 most urgent)."""
    for candidate in (
        getattr(task, "declared_priority", None),
        getattr(task, "priority", None),
        queue_specs()[queue_name].priority,
    ):
        if candidate is not None:
            return _valid_priority(candidate)
    return settings.TASKYARD_DEFAULT_PRIORITY


def _check_priority(priority: Any) -> int | None:
    return None if priority is None else _valid_priority(priority)


def _valid_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise EnqueueError(f"priority must be an integer {PRIORITY_MIN}-{PRIORITY_MAX}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise EnqueueError(f"priority {priority} is outside {PRIORITY_MIN}-{PRIORITY_MAX}")
    return priority


def _run_at(run_at: Any, countdown: Any, now: dt.datetime) -> dt.datetime | None:
    if run_at is not None and countdown is not None:
        raise EnqueueError("give run_at or countdown, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float):
            raise EnqueueError(f"countdown must be a number of seconds, not {countdown!r}")
        if countdown < 0:
            raise EnqueueError(f"countdown must not be negative (got {countdown})")
        return now + dt.timedelta(seconds=countdown)
    if run_at is not None:
        if isinstance(run_at, str):
            try:
                run_at = dt.datetime.fromisoformat(run_at)
            except ValueError:
                raise EnqueueError(f"run_at {run_at!r} is not an ISO 8601 datetime") from None
        if not isinstance(run_at, dt.datetime):
            raise EnqueueError(f"run_at must be a datetime, not {type(run_at).__name__}")
        if timezone.is_naive(run_at):
            raise EnqueueError("run_at must be timezone-aware")
        return run_at
    return None


def _split_options(options: Mapping[str, Any]) -> dict:
    kept: dict[str, Any] = {}
    for key, value in options.items():
        if key in IGNORED_OPTIONS or value is None:
            continue
        if key in ("serializer", "result_serializer") and value != "json":
            raise EnqueueError(f"{key}={value!r}: Taskyard only sends JSON")
        if key in ("serializer", "result_serializer", "compression"):
            continue
        if key not in PASSTHROUGH_OPTIONS:
            raise EnqueueError(f"option {key!r} is not supported for tracked jobs")
        kept[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return kept


def build_job(
    celery_task: Task,
    args: Iterable = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: dt.datetime | str | None = None,
    countdown: float | None = None,
    unique_key: str | None = None,
    max_attempts: int | None = None,
    user=None,
    job_id: uuid.UUID | str | None = None,
    options: Mapping[str, Any] | None = None,
    origin: str = JobOrigin.LEDGER,
    replay_of: Job | None = None,
    now: dt.datetime | None = None,
) -> tuple[Job, dt.datetime | None]:
    """The unsaved Job of one call, every argument checked (EnqueueError otherwise), and
    its due time: None when it is due now (queued, published at commit), else when the
    relay promotes it (scheduled)."""
    args, kwargs, passthrough = _check_arguments(celery_task, args, kwargs, options)
    if unique_key is None:
        unique_key = _declared_unique_key(celery_task, args, kwargs)
    queue_name = resolve_queue(celery_task, queue, args, kwargs)
    priority = _check_priority(priority)
    if priority is None:
        priority = default_priority(celery_task, queue_name)
    now = now or timezone.now()
    when = _run_at(run_at, countdown, now)
    if max_attempts is None:
        max_attempts = retry_policy_for(celery_task, queue_name).max_attempts
    elif isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise EnqueueError(f"max_attempts must be a positive integer, not {max_attempts!r}")
    if unique_key is not None and (not isinstance(unique_key, str) or not unique_key.strip()):
        raise EnqueueError("unique_key must be a non-empty string")

    due = when is None or when <= now
    job = Job(
        id=uuid.UUID(str(job_id)) if job_id else uuid.uuid4(),
        task_name=celery_task.name,
        queue=queue_name,
        args=args,
        kwargs=kwargs,
        options=passthrough,
        priority=priority,
        status=JobStatus.QUEUED if due else JobStatus.SCHEDULED,
        origin=origin,
        unique_key=unique_key,
        max_attempts=max_attempts,
        run_at=None if due else when,
        enqueued_at=now,
        # Set now, in the insert, to spare an UPDATE per job on the hot path; cleared if
        # the after-commit publish fails, which is what the relay looks for.
        published_at=now if due else None,
        # By id: the relation descriptors cost more than the rest of the row.
        enqueued_by_id=user.pk if getattr(user, "is_authenticated", False) else None,
        replay_of_id=replay_of.pk if replay_of is not None else None,
    )
    return job, None if due else when


def enqueue(
    task: str | Task,
    args: Iterable = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: dt.datetime | str | None = None,
    countdown: float | None = None,
    unique_key: str | None = None,
    on_conflict: str = "keep",
    max_attempts: int | None = None,
    user=None,
    job_id: uuid.UUID | str | None = None,
    options: Mapping[str, Any] | None = None,
    origin: str = JobOrigin.LEDGER,
    replay_of: Job | None = None,
) -> Job:
    """Insert a job in the caller's transaction and publish it after commit.

    Returns the new Job, or, when ``unique_key`` is held by an active job, that job
    (``on_conflict="keep"``). With ``on_conflict="replace"`` a holder that has not started
    yet is cancelled and replaced by this job (debounce); a running holder is returned.
    Raises EnqueueError (UnknownTask, UnknownQueue, InvalidArguments...) before anything
    is written.
    """
    job, when = build_job(
        resolve_task(task),
        args,
        kwargs,
        queue=queue,
        priority=priority,
        run_at=run_at,
        countdown=countdown,
        unique_key=unique_key,
        max_attempts=max_attempts,
        user=user,
        job_id=job_id,
        options=options,
        origin=origin,
        replay_of=replay_of,
    )
    if on_conflict not in ("keep", "replace"):
        raise EnqueueError(f"on_conflict must be 'keep' or 'replace', not {on_conflict!r}")
    unique_key = job.unique_key
    due = when is None
    # No savepoint of its own inside the caller's transaction (two round trips saved per
    # job): a failed insert fails the caller's transaction either way. The unique-key
    # path keeps its savepoint, inside _insert_unique, to recover from the conflict.
    # Outside any transaction a plain job is one autocommitted INSERT (no BEGIN and
    # COMMIT round trips), and on_commit publishes right after it.
    plain = unique_key is None and not connection.in_atomic_block
    with contextlib.nullcontext() if plain else transaction.atomic(savepoint=False):
        if unique_key is None:
            job.save(force_insert=True)
        else:
            existing = _insert_unique(job, replace=on_conflict == "replace")
            if existing is not None:
                return existing
        if due:
            spec = PublishSpec.of(job)
            transaction.on_commit(lambda: publish_after_commit([spec]), robust=True)
        elif when is not None:  # not due means scheduled, so when is set
            nudge_relay_if_soon(when)
    return job


# Concurrent replacers of one key can each cancel the other's job once; a few rounds
# settle it (the constraint keeps one active job whatever happens).
_REPLACE_ROUNDS = 5
_WAITING = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)


def _insert_unique(job: Job, *, replace: bool = False) -> Job | None:
    """Insert ``job``, or return the active job that holds its unique key. The partial
    unique constraint decides, so concurrent enqueuers cannot both win."""
    if replace and connection.vendor == "postgresql":
        # Replacers of one key take turns (until the caller's transaction ends), instead
        # of cancelling each other's fresh jobs round after round. SQLite serialises all
        # writers anyway.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [job.unique_key])
    for _ in range(_REPLACE_ROUNDS):
        try:
            with transaction.atomic():
                job.save(force_insert=True)
            return None
        except IntegrityError:
            holder = Job.objects.filter(
                unique_key=job.unique_key, status__in=ACTIVE_STATUSES
            ).first()
            if holder is None:
                continue  # the holder finished meanwhile: try the insert again
            if not replace or holder.status not in _WAITING:
                logger.info(
                    "job %s not enqueued: unique key %r held by %s (%s)",
                    job.id,
                    job.unique_key,
                    holder.id,
                    holder.status,
                )
                return holder
            cancel_waiting(
                holder.id,
                error_class="taskyard.Replaced",
                message=f"replaced by job {job.id} (unique key {job.unique_key})",
            )
            logger.info("job %s replaced by %s (unique key %r)", holder.id, job.id, job.unique_key)
    raise EnqueueError(f"unique key {job.unique_key!r}: too many concurrent replacements")


@dataclass(frozen=True)
class PublishSpec:
    """What a publish needs, copied out of the row so on_commit does not re-read it."""

    job_id: str
    task_name: str
    queue: str
    args: list
    kwargs: dict
    options: dict
    priority: int | None = None

    @classmethod
    def of(cls, job: Job) -> PublishSpec:
        return cls(
            str(job.id), job.task_name, job.queue, job.args, job.kwargs, job.options, job.priority
        )


# A broker that does not accept a connection within this time is treated as down: the
# job waits unpublished and the relay publishes it. kombu's default would retry for
# broker_connection_timeout (4 s) on every publish, inside the caller's web request.
PUBLISH_CONNECT_TIMEOUT_SECONDS = 1.0
# After a failed publish this process stops trying for a while, so a broker outage costs
# one request one timeout, not every request one timeout each.
PUBLISH_BREAKER_SECONDS = 5.0


class BrokerUnavailable(ConnectionError):
    pass


class _Publisher:
    """A connection pool for ledger publishes that fails fast, per process."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._pool = None
        self._lock = threading.Lock()
        self.open_until = 0.0  # monotonic time until which publishes are skipped
        # Copiers of the kinds of message this process published (queueing/ledger/wire.py).
        self._copiers: dict[tuple, tuple[str, Callable[[str, list, dict], str]]] = {}
        self._copiers_pid: int | None = None

    def pool(self):
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # fresh after a fork
                app = _app()
                options = {
                    **app.conf.broker_transport_options,
                    "max_retries": 1,
                    "interval_start": 0,
                    "interval_step": 0.1,
                    "interval_max": 0.1,
                    "connect_retries_timeout": PUBLISH_CONNECT_TIMEOUT_SECONDS,
                    # A Redis that accepts the connection but never answers (hung, or
                    # SIGSTOPped) must not hold the caller's request for the broker's
                    # 30 s socket timeout: one second, then the relay publishes.
                    "socket_timeout": PUBLISH_CONNECT_TIMEOUT_SECONDS,
                }
                connection = app.connection_for_write(
                    connect_timeout=PUBLISH_CONNECT_TIMEOUT_SECONDS, transport_options=options
                )
                self._pool = connection.Pool(limit=app.conf.broker_pool_limit)
                self._pid = os.getpid()
            return self._pool

    def send(self, specs: list[PublishSpec], *, breaker: bool) -> None:
        """Publish every message of ``specs`` and index them as sent, in one Redis round
        trip; one immediate retry on a fresh connection (a pooled connection goes stale
        when Redis restarts, and that is no reason to wait). Raises if both fail: then
        none of them may be counted as published (some may have been: a duplicate
        message is dropped by the claim)."""
        if breaker and time.monotonic() < self.open_until:
            raise BrokerUnavailable("broker marked down by a recent publish failure")
        try:
            try:
                self._send_batch(specs)
            except Exception as exc:
                logger.debug("publish failed (%r); once more on a fresh connection", exc)
                self._send_batch(specs, fresh=True)
        except Exception:
            self.open_until = time.monotonic() + PUBLISH_BREAKER_SECONDS
            raise
        self.open_until = 0.0

    def _send_copies(self, specs: list[PublishSpec]) -> bool:
        """Publish ``specs`` as copies of messages this process sent before, with their
        in-flight index entries, in one pipeline; False (nothing sent) if a kind of
        message among them has no copier yet."""
        if self._copiers_pid != os.getpid():  # a forked child starts afresh
            self._copiers, self._copiers_pid = {}, os.getpid()
        found = []
        for spec in specs:
            kind = wire.group_key(spec.task_name, spec.queue, spec.priority, spec.options)
            entry = self._copiers.get(kind)
            if entry is None:
                return False
            found.append(entry)
        pipeline = shared_redis().pipeline(transaction=False)
        for spec, (key, copy) in zip(specs, found, strict=True):
            pipeline.lpush(key, copy(spec.job_id, spec.args, spec.kwargs))
        pipeline.sadd(inflight.SENT_KEY, *[spec.job_id for spec in specs])
        pipeline.execute()
        return True

    def _send_batch(self, specs: list[PublishSpec], *, fresh: bool = False) -> None:
        app = _app()
        # Copies of one send_task per kind of message (queueing/ledger/wire.py), unless
        # task-sent events are on: those come from send_task only.
        copy_allowed = not app.conf.task_send_sent_event
        # Kept across calls only outside a running task (whose id is its messages'
        # parent) and for messages without per-call options (expires, links...).
        keep = copy_allowed and app.current_worker_task is None
        if keep and not fresh and self._send_copies(specs):
            return
        with self.pool().acquire(block=True, timeout=PUBLISH_CONNECT_TIMEOUT_SECONDS) as conn:
            if fresh:
                conn.close()  # reconnects on first use
            producer = app.amqp.Producer(conn)
            # kombu's publish batch (5.7): the messages' LPUSHes go out in one pipeline,
            # and the in-flight index's SADD rides in the same one (queueing/inflight.py).
            with producer.batch(max_size=len(specs) + 1):
                copies: dict[tuple, tuple[str, Callable[[str, list, dict], str]]] = {}
                for spec in specs:
                    kind = wire.group_key(spec.task_name, spec.queue, spec.priority, spec.options)
                    pipeline = inflight.batch_pipeline(producer) if copy_allowed else None
                    if pipeline is not None and kind in copies:
                        key, copy = copies[kind]
                        pipeline.lpush(key, copy(spec.job_id, spec.args, spec.kwargs))
                        continue
                    self._send_one(app, producer, spec)
                    pipeline = inflight.batch_pipeline(producer) if copy_allowed else None
                    if pipeline is not None:
                        key, template = wire.last_lpush(pipeline)
                        copies[kind] = (key, wire.copier(template, app))
                inflight.add_to_batch(producer, [spec.job_id for spec in specs])
        if keep:
            self._copiers.update((kind, entry) for kind, entry in copies.items() if not kind[3])

    @staticmethod
    def _send_one(app, producer, spec: PublishSpec) -> None:
        options = dict(spec.options)
        options["headers"] = {**(options.get("headers") or {}), LEDGER_HEADER: True}
        app.send_task(
            spec.task_name,
            args=spec.args,
            kwargs=spec.kwargs,
            task_id=spec.job_id,
            queue=spec.queue,
            # kombu's Redis transport keeps one list per priority and pops the lowest
            # number first (config: broker priority_steps 0-9).
            priority=spec.priority,
            producer=producer,
            retry=False,
            **options,
        )


_publisher = _Publisher()


_outage = OutageLog("publish after commit", logger)
# Ids per UPDATE when a failed bulk publish is marked unpublished.
UNPUBLISH_BATCH = 2000


def broker_queue_keys(queue: str, *, up_to_priority: int = PRIORITY_MAX) -> list[str]:
    """The Redis lists behind one queue, most urgent first: kombu keeps one list per
    priority step (``queue``, ``queue\\x06\\x161`` ... ``queue\\x06\\x169``), the bare
    name for 0. ``up_to_priority`` keeps the lists served before or with that priority."""
    options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    separator = options.get("sep", "\x06\x16")
    return [
        queue if step == 0 else f"{queue}{separator}{step}"
        for step in options.get("priority_steps", (0, 3, 6, 9))
        if step <= up_to_priority
    ]


def publish(spec: PublishSpec, *, breaker: bool = True) -> None:
    """Send the wake-up message for a job (task id = job id). Raises on broker errors,
    at once while the breaker is open (``breaker=False``: try anyway, as the relay does).
    """
    _publisher.send([spec], breaker=breaker)


def publish_many(specs: list[PublishSpec], *, breaker: bool = True) -> None:
    """:func:`publish` for many jobs, in one Redis round trip."""
    if specs:
        _publisher.send(specs, breaker=breaker)


def publish_after_commit(specs: list[PublishSpec]) -> bool:
    """Publish the committed jobs (one pipeline); on failure mark them unpublished for
    the relay. Never raises."""
    try:
        publish_many(specs)
        _outage.back()
        return True
    except Exception as exc:
        more = f" and {len(specs) - 1} more" if len(specs) > 1 else ""
        _outage.failed(f"{specs[0].job_id}{more}", exc)
    ids = [spec.job_id for spec in specs]
    try:
        for start in range(0, len(ids), UNPUBLISH_BATCH):
            Job.objects.filter(
                id__in=ids[start : start + UNPUBLISH_BATCH], status=JobStatus.QUEUED
            ).update(published_at=None)
    except Exception:
        # Their published_at stays; the relay's lost-message repair still finds them.
        logger.exception("job %s%s: could not mark unpublished", ids[0], more)
    return False

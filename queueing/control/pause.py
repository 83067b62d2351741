"""Pause and resume a queue, cluster-wide and durably.

The pause is a ``QueueState`` row (survives everything) mirrored in a Redis set that the
workers read on every claim (cheap, one SISMEMBER). Pausing also tells running workers to
stop consuming the queue (Celery's ``cancel_consumer`` broadcast); a worker that starts
later reads the paused set when it is ready and does the same; a message that a worker
had already prefetched goes back to the ledger unclaimed, without spending an attempt,
and the relay publishes it again after the resume.
"""

from __future__ import annotations

import logging

import redis
from celery.worker.control import control_command
from django.conf import settings
from django.db import transaction

from queueing.broker import as_text, control_connection, shared_redis
from queueing.models import Job, JobStatus, QueueState
from queueing.registry import started_for

logger = logging.getLogger(__name__)

PAUSED_KEY = "taskyard:paused-queues"


class UnknownQueueError(ValueError):
    pass


def _check(name: str) -> None:
    if name not in settings.TASKYARD_QUEUES:
        raise UnknownQueueError(
            f"unknown queue {name!r}; declared queues: {', '.join(settings.TASKYARD_QUEUES)}"
        )


def _set(name: str, paused: bool, user, reason: str) -> QueueState:
    _check(name)
    with transaction.atomic():
        state, _ = QueueState.objects.select_for_update().get_or_create(name=name)
        state.paused = paused
        state.changed_by = user if getattr(user, "is_authenticated", False) else None
        state.reason = reason[:255]
        state.save()
    try:
        client = shared_redis(text=True)
        (client.sadd if paused else client.srem)(PAUSED_KEY, name)
    except redis.RedisError:
        # The row is what counts; the relay copies it to Redis on its next tick.
        logger.warning("queue %s: pause state saved, Redis not updated yet", name)
    return state


def pause_queue(name: str, *, user=None, reason: str = "") -> QueueState:
    """Stop every worker from starting jobs of ``name`` until resume_queue()."""
    from config.celery import app

    state = _set(name, True, user, reason)
    with control_connection() as connection:
        app.control.cancel_consumer(name, connection=connection)
    logger.warning("queue %s paused (%s)", name, reason or "no reason given")
    return state


def resume_queue(name: str, *, user=None, reason: str = "") -> QueueState:
    from config.celery import app

    state = _set(name, False, user, reason)
    # Not Celery's add_consumer, which would make *every* worker consume the queue: each
    # worker takes it back only if its own command line (-Q) had it.
    with control_connection() as connection:
        app.control.broadcast(
            "taskyard_resume_queue", arguments={"queue": name}, connection=connection
        )
    # Jobs put back while paused wait unpublished; the relay publishes them next tick.
    logger.warning("queue %s resumed", name)
    return state


def paused_queues_in_database() -> set[str]:
    """The paused queues as the database records them (the source of truth; Redis holds
    a copy for the hot paths, see sync_paused_set())."""
    return set(QueueState.objects.filter(paused=True).values_list("name", flat=True))


def paused_queues() -> set[str]:
    """The paused queues: from Redis, or from the database when Redis does not answer."""
    try:
        return {as_text(name) for name in shared_redis(text=True).smembers(PAUSED_KEY)}
    except redis.RedisError:
        return paused_queues_in_database()


def is_paused(name: str) -> bool:
    try:
        return bool(shared_redis(text=True).sismember(PAUSED_KEY, name))
    except redis.RedisError:
        return QueueState.objects.filter(name=name, paused=True).exists()


def sync_paused_set() -> set[str]:
    """Make the Redis set equal the database (a wiped Redis forgets pauses)."""
    paused = paused_queues_in_database()
    client = shared_redis(text=True)
    current = client.smembers(PAUSED_KEY)
    # Add and remove the differences only: emptying the set first would let a worker's
    # claim see a paused queue as running for a moment.
    if paused - current:
        client.sadd(PAUSED_KEY, *(paused - current))
    if current - paused:
        client.srem(PAUSED_KEY, *(current - paused))
    return paused


def put_back(job_id: str) -> None:
    """A delivery of a paused queue's job: leave it queued, unpublished, no attempt."""
    Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(published_at=None)
    logger.info("job %s: its queue is paused, put back without an attempt", job_id)


# The queues this worker process was started to consume (its -Q), noted when it is ready.
_configured_queues: set[str] = set()


@control_command(args=[("queue", str)], signature="<queue>")
def taskyard_resume_queue(state, queue: str) -> dict:
    """Worker side of resume_queue(): consume ``queue`` again if this worker was started
    for it."""
    if queue not in _configured_queues:
        return {"ok": f"{queue} is not one of this worker's queues"}
    state.consumer.call_soon(state.consumer.add_task_queue, queue)
    return {"ok": f"consuming {queue} again"}


def on_worker_ready(sender=None, **_) -> None:
    """Celery signal: note this worker's queues; stop consuming the paused ones."""
    consumer = sender
    if consumer.task_consumer:
        _configured_queues.update(queue.name for queue in consumer.task_consumer.queues)
        started_for(_configured_queues)
    try:
        names = paused_queues()
    except Exception:
        logger.exception("could not read the paused queues at worker start")
        return
    for name in names:
        if consumer.task_consumer and consumer.task_consumer.consuming_from(name):
            consumer.cancel_task_queue(name)
            logger.warning("queue %s is paused: this worker does not consume it", name)

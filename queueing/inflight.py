"""Where each published job's message is, so the relay can tell a lost one (issue 19).

The ledger knows a job was published; only the broker knows whether the message still
exists. Scanning kombu's lists for a job id costs the whole backlog, so the platform keeps
its own small index next to the messages, in the same Redis:

- ``taskyard:inflight:sent``, a set: job ids whose message was accepted by the broker and
  not yet received by a worker (added right after the publish);
- ``taskyard:inflight:reserved:<worker>``, a set per worker: job ids that worker received
  (prefetched, waiting for a rate limit, or running) and has not finished with; moved
  there from ``sent`` in one MULTI when the message arrives, removed after the attempt;
- ``taskyard:inflight:workers``, the workers that have such a set.

A queued job published a while ago that is in neither ``sent`` nor the set of a live
worker has no message: the relay publishes it again (the claim drops the duplicate if the
old message turns up). A dead worker's set names the messages it took with it: their jobs
are published again as soon as its heartbeat goes stale, instead of after the broker's
visibility timeout. If Redis loses its data the index goes with the messages, and the
relay's epoch check republishes every queued job anyway.

Every write here is best effort: a missing entry makes the relay publish a duplicate
(harmless), never lose a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from queueing.broker import as_text, shared_redis

logger = logging.getLogger(__name__)

SENT_KEY = "taskyard:inflight:sent"
RESERVED_KEY = "taskyard:inflight:reserved:{worker}"
WORKERS_KEY = "taskyard:inflight:workers"


def worker_of(owner: str) -> str:
    """The worker (hostname) of a lease owner ``hostname/pid``."""
    return owner.rsplit("/", 1)[0]


def reserved_key(worker: str) -> str:
    return RESERVED_KEY.format(worker=worker)


def mark_sent(job_ids: Iterable[str], client: redis.Redis | None = None) -> None:
    """After the broker accepted these jobs' messages."""
    ids = [str(job_id) for job_id in job_ids]
    if not ids:
        return
    try:
        (client or shared_redis()).sadd(SENT_KEY, *ids)
    except redis.RedisError as exc:
        logger.debug("inflight: %d sent job(s) not indexed: %r", len(ids), exc)


def mark_received(job_id: str, worker: str) -> None:
    """A worker took the message of ``job_id`` off the broker (Celery's task_received)."""
    try:
        pipe = shared_redis().pipeline(transaction=True)
        pipe.srem(SENT_KEY, job_id)
        pipe.sadd(reserved_key(worker), job_id)
        pipe.sadd(WORKERS_KEY, worker)
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("job %s: receipt not indexed: %r", job_id, exc)


def release(pipe, job_id: str, owner: str) -> None:
    """Add to ``pipe``: the worker is done with ``job_id``'s message."""
    pipe.srem(reserved_key(worker_of(owner)), job_id)


def where(job_ids: list[str], workers: Iterable[str], client: redis.Redis) -> set[str]:
    """The subset of ``job_ids`` whose message is known to exist: waiting in the broker,
    or held by one of ``workers``. Raises RedisError (the caller decides nothing then)."""
    if not job_ids:
        return set()
    workers = list(workers)
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.sismember(SENT_KEY, job_id)
        for worker in workers:
            pipe.sismember(reserved_key(worker), job_id)
    replies = pipe.execute()
    width = 1 + len(workers)
    return {
        job_id
        for index, job_id in enumerate(job_ids)
        if any(replies[index * width : (index + 1) * width])
    }


def workers_with_reservations(client: redis.Redis) -> set[str]:
    return {as_text(name) for name in client.smembers(WORKERS_KEY)}


def reservations(worker: str, client: redis.Redis) -> list[str]:
    return [as_text(job_id) for job_id in client.smembers(reserved_key(worker))]


def drop_worker(worker: str, client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(reserved_key(worker))
    pipe.srem(WORKERS_KEY, worker)
    pipe.execute()


def drop(worker: str, job_ids: list[str], client: redis.Redis) -> None:
    if job_ids:
        client.srem(reserved_key(worker), *job_ids)


def forget_sent(job_ids: list[str], client: redis.Redis) -> None:
    if job_ids:
        client.srem(SENT_KEY, *job_ids)

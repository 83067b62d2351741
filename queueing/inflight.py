"""Where each published job's message is, so the relay can tell a lost one (issue 19).

The ledger knows a job was published; only the broker knows whether the message still
exists. Scanning kombu's lists for a job id costs the whole backlog, so the platform keeps
its own small index next to the messages, in the same Redis:

- ``taskyard:inflight:sent``, a set: job ids whose message was accepted by the broker and
  not yet received by a worker (added right after the publish);
- ``taskyard:inflight:reserved:<worker>``, a sorted set per worker: job ids that worker
  received and has not finished with, scored by the time it received them; moved there
  from ``sent`` in one MULTI when the message arrives, removed after the attempt;
- ``taskyard:inflight:workers``, the workers that have such a set.

A queued job published a while ago that is in neither ``sent`` nor a worker's set has no
message: the relay publishes it again (the claim drops the duplicate if the old message
turns up). A job a worker received more than ``held_for`` seconds ago and still has not
started was lost by that worker (a consumer that reconnected after a broker outage drops
what it had received, and kombu gives the message back only after its visibility
timeout): it is published again too. A worker starts what it receives at once (rate
limits, provider holds and concurrency keys defer the job instead of holding the message),
so a long hold means a lost message, and a duplicate costs nothing. A dead worker's set
names the messages it took with it: their jobs
are published again as soon as its heartbeat goes stale, instead of after the broker's
visibility timeout. If Redis loses its data the index goes with the messages, and the
relay's epoch check republishes every queued job anyway.

Every write here is best effort: a missing entry makes the relay publish a duplicate
(harmless), never lose a job.
"""

from __future__ import annotations

import json
import logging
import threading
import time
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


def batch_pipeline(producer):
    """The Redis pipeline of ``producer``'s open publish batch (kombu 5.7's Redis
    PublishBatch keeps it on the producer's batch session), or None: another transport,
    no batch open yet, or a kombu that changed."""
    state = getattr(getattr(producer, "_batch_local", None), "current", None)
    return getattr(getattr(state, "session", None), "pipeline", None)


def add_to_batch(producer, job_ids: list[str]) -> None:
    """Inside ``producer.batch()``, after its publishes: index ``job_ids`` as sent in the
    batch's own pipeline, so the messages and their index entries travel in one round
    trip and exist together; without a batch pipeline, a separate SADD after the
    publishes (which went out one by one already)."""
    pipeline = batch_pipeline(producer)
    if pipeline is None:
        mark_sent(job_ids)
        return
    pipeline.sadd(SENT_KEY, *job_ids)


# Receipts this process could not write (Redis went away under the worker), written with
# their original times once Redis answers: a message received just as the broker died is
# usually dropped by the reconnecting consumer, and only this record makes the relay
# publish its job again. Bounded: past it the relay's general repair still finds them.
_pending: list[tuple[str, str, float]] = []
_pending_lock = threading.Lock()
MAX_PENDING = 10_000


def mark_received(job_id: str, worker: str) -> None:
    """A worker took the message of ``job_id`` off the broker (Celery's task_received)."""
    _write_receipts([(job_id, worker, time.time())])


def flush_pending() -> None:
    """Write the receipts left over from an outage (the worker's heartbeat calls this)."""
    if _pending:
        _write_receipts([])


def _write_receipts(new: list[tuple[str, str, float]]) -> None:
    with _pending_lock:
        receipts = [*_pending, *new]
        _pending.clear()
    if not receipts:
        return
    try:
        pipe = shared_redis().pipeline(transaction=True)
        for job_id, worker, at in receipts:
            pipe.srem(SENT_KEY, job_id)
            pipe.zadd(reserved_key(worker), {job_id: at})
            pipe.sadd(WORKERS_KEY, worker)
        pipe.execute()
    except redis.RedisError as exc:
        with _pending_lock:
            _pending[:0] = receipts[-MAX_PENDING:]
            del _pending[MAX_PENDING:]
        logger.debug("%d receipt(s) not indexed yet: %r", len(receipts), exc)


def release(pipe, job_id: str, owner: str) -> None:
    """Add to ``pipe``: the worker is done with ``job_id``'s message."""
    pipe.zrem(reserved_key(worker_of(owner)), job_id)


def where(
    job_ids: list[str], workers: Iterable[str], client: redis.Redis, *, held_for: float
) -> set[str]:
    """The subset of ``job_ids`` whose message is known to exist: waiting in the broker,
    or received by one of ``workers`` less than ``held_for`` seconds ago. Raises
    RedisError (the caller decides nothing then)."""
    if not job_ids:
        return set()
    workers = list(workers)
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.sismember(SENT_KEY, job_id)
        for worker in workers:
            pipe.zscore(reserved_key(worker), job_id)
    replies = pipe.execute()
    width = 1 + len(workers)
    since = time.time() - held_for
    known = set()
    for index, job_id in enumerate(job_ids):
        waiting, *received = replies[index * width : (index + 1) * width]
        if waiting or any(at is not None and at >= since for at in received):
            known.add(job_id)
    return known


# kombu's Redis transport: messages delivered to a consumer and not acknowledged yet
# (delivery tag -> [message, exchange, routing key]), and when each was delivered.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


def taken_without_receipt(
    job_ids: Iterable[str], client: redis.Redis, *, older_than: float
) -> dict[str, bytes]:
    """Of ``job_ids``, those still in ``sent`` whose message a consumer took off the
    broker more than ``older_than`` seconds ago without any worker recording it (a
    consumer killed between kombu's delivery and Celery's task_received, or whose receipt
    write was pending): job id -> kombu delivery tag. kombu would restore such a message
    only after its visibility timeout (hours). Raises RedisError."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    tags: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
        UNACKED_INDEX_KEY, "-inf", time.time() - older_than
    )
    taken: dict[str, bytes] = {}
    for start in range(0, len(tags), 500):
        chunk = tags[start : start + 500]
        for tag, raw in zip(chunk, client.hmget(UNACKED_KEY, chunk), strict=True):
            try:
                job_id = json.loads(raw)[0]["headers"]["id"]  # type: ignore[arg-type]
            except (TypeError, ValueError, LookupError):
                continue  # gone since, or not a Celery message
            if job_id in wanted:
                taken[job_id] = tag
    if not taken:
        return {}
    pipe = client.pipeline(transaction=False)
    for job_id in taken:
        pipe.sismember(SENT_KEY, job_id)
    still_sent = pipe.execute()
    return {
        job_id: tag for (job_id, tag), sent in zip(taken.items(), still_sent, strict=True) if sent
    }


def forget_deliveries(tags: Iterable[bytes], client: redis.Redis) -> None:
    """Drop kombu's unacked entries of messages published again in their place."""
    tags = list(tags)
    if tags:
        pipe = client.pipeline(transaction=True)
        pipe.hdel(UNACKED_KEY, *tags)
        pipe.zrem(UNACKED_INDEX_KEY, *tags)
        pipe.execute()


def workers_with_reservations(client: redis.Redis) -> set[str]:
    return {as_text(name) for name in client.smembers(WORKERS_KEY)}


def reservations(worker: str, client: redis.Redis) -> list[str]:
    members: list[bytes | str] = client.zrange(reserved_key(worker), 0, -1)  # type: ignore[assignment]
    return [as_text(job_id) for job_id in members]


def drop_worker(worker: str, client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(reserved_key(worker))
    pipe.srem(WORKERS_KEY, worker)
    pipe.execute()


def drop(worker: str, job_ids: list[str], client: redis.Redis) -> None:
    if job_ids:
        client.zrem(reserved_key(worker), *job_ids)


def forget_sent(job_ids: list[str], client: redis.Redis) -> None:
    if job_ids:
        client.srem(SENT_KEY, *job_ids)

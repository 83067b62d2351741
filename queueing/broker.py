"""Connections to Redis: the broker connection for control broadcasts (pause, resume,
revoke, inspect), the shared client for the platform's own keys, the lease lock that
keeps one beat (and, on SQLite, one relay) at work, and the header that marks a message
published by the ledger."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from django.conf import settings
from kombu import Connection

# Marks a message the ledger published (queueing.ledger.enqueue). A worker that finds no
# row for such a message drops it (the job was deleted or pruned); only unmarked messages
# (``celery call``, Flower, another service) are adopted.
LEDGER_HEADER = "taskyard_ledger"

logger = logging.getLogger(__name__)


def control_connection() -> Connection:
    """A new broker connection, to use as ``with control_connection() as conn:``.

    Control commands are rare, so each gets its own connection instead of one from the
    app's pool: a pooled connection goes stale when Redis restarts, and a broadcast
    written to it fails with a broken pipe instead of reconnecting.
    """
    from config.celery import app

    return app.connection_for_write()


def as_text(reply: bytes | str) -> str:
    """A string reply from either client flavour as str (redis-py types every reply as
    ``bytes | str`` whatever ``decode_responses`` says)."""
    return reply.decode() if isinstance(reply, bytes) else reply


# Every command of the platform's own keys is a few microseconds of Redis work; a reply
# that takes a second means a hung Redis, and the caller (a web request, a worker's
# pause check) must move on.
REDIS_TIMEOUT_SECONDS = 1.0

_clients: dict[bool, redis.Redis] = {}
_clients_lock = threading.Lock()


def shared_redis(*, text: bool = False) -> redis.Redis:
    """This process's Redis client for the platform's own keys (pause set, limits,
    heartbeats, metrics, wake-ups): one per process and flavour (``text`` decodes replies
    to str), so no caller opens a connection per call. redis-py's pool reconnects after
    a fork and after Redis restarts. Short timeouts: a Redis that hangs (accepts
    connections, never answers) costs a caller a second, not forever."""
    client = _clients.get(text)
    if client is None:
        with _clients_lock:
            client = _clients.get(text)
            if client is None:
                client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                    decode_responses=text,
                )
                _clients[text] = client
    return client


class RedisLock:
    """A lock held by one ``owner`` at a time that lapses when its holder stops renewing
    it (stopped or dead), so a standby can take over."""

    def __init__(self, client: redis.Redis, key: str, owner: str) -> None:
        self.client = client
        self.key = key
        self.owner = owner

    def hold(self, ttl_seconds: float) -> bool:
        """Take the lock or, when this owner has it, renew it for ``ttl_seconds``; False
        when another owner holds it. Raises redis.RedisError when Redis does not answer
        (the caller decides whether to go on without the lock)."""
        ttl_ms = int(ttl_seconds * 1000)
        if self.client.set(self.key, self.owner, nx=True, px=ttl_ms):
            return True
        if self.holder() == self.owner:
            self.client.pexpire(self.key, ttl_ms)
            return True
        return False

    def holder(self) -> str | None:
        """The owner holding the lock now, if any."""
        value = self.client.get(self.key)
        return None if value is None else as_text(value)

    def release(self) -> None:
        """Give the lock up if this owner holds it."""
        if self.holder() == self.owner:
            self.client.delete(self.key)


def tolerate_kombu_restore_failure() -> None:
    """kombu's Redis transport puts a worker's unacknowledged messages back when it closes
    a channel; on a connection that Redis just dropped, that restore can itself fail
    (``'NoneType' object has no attribute 'hostname'``, kombu#970/#582 in older forms),
    and Celery then stops the worker with "Unrecoverable error": a Redis restart kills
    workers. The restore is only an optimisation here: the relay publishes again the jobs
    of messages a worker received and did not run (queueing/inflight.py). So a failed
    restore is logged and the worker reconnects. The same for an acknowledgement on such
    a closed channel (_closed_channel_tolerant). Idempotent."""
    from kombu.transport.redis import QoS

    original = QoS.restore_unacked_once
    if getattr(original, "taskyard_tolerant", False):
        return

    def restore_unacked_once(self, stderr=None):
        try:
            return original(self, stderr)
        except Exception as exc:
            logger.warning(
                "broker connection closed with %d unacknowledged message(s) not put back "
                "(%r); the relay publishes their jobs again",
                len(self._delivered),
                exc,
            )
            return None

    restore_unacked_once.taskyard_tolerant = True  # type: ignore[attr-defined]
    QoS.restore_unacked_once = restore_unacked_once  # type: ignore[method-assign]
    QoS.ack = _closed_channel_tolerant(QoS.ack, "acknowledged")  # type: ignore[method-assign]
    QoS.reject = _closed_channel_tolerant(QoS.reject, "rejected")  # type: ignore[method-assign]


def _closed_channel_tolerant(original: Any, done: str) -> Any:
    """kombu's Redis QoS.ack/reject for a message whose channel a connection loss closed:
    a task that ends after the loss acknowledges on the old channel, whose connection is
    gone, and kombu raises AttributeError ("'NoneType' object has no attribute 'client'"),
    which Celery takes for an "Unrecoverable error" and the worker exits (seen after a
    Redis restart that kept its data). Nothing is lost by not acknowledging: the job's
    outcome is in the ledger, and kombu's copy, left in its unacked hash, comes back after
    the visibility timeout, when the claim drops it as a duplicate."""
    if getattr(original, "taskyard_tolerant", False):
        return original

    def tolerant(self: Any, delivery_tag: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.channel, "connection", None) is None:
            self._delivered.pop(delivery_tag, None)
            logger.warning(
                "message %s not %s: its channel closed with a broker connection loss (the "
                "ledger has the job's outcome; a redelivered copy is dropped by the claim)",
                delivery_tag,
                done,
            )
            return None
        return original(self, delivery_tag, *args, **kwargs)

    tolerant.taskyard_tolerant = True  # type: ignore[attr-defined]
    return tolerant

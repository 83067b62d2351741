"""Connections to Redis: the broker connection for control broadcasts (pause, resume,
revoke, inspect) and the shared client for the platform's own keys."""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from kombu import Connection


def control_connection() -> Connection:
    """A new broker connection, to use as ``with control_connection() as conn:``.

    Control commands are rare, so each gets its own connection instead of one from the
    app's pool: a pooled connection goes stale when Redis restarts, and a broadcast
    written to it fails with a broken pipe instead of reconnecting.
    """
    from config.celery import app

    return app.connection_for_write()


_clients: dict[bool, redis.Redis] = {}
_clients_lock = threading.Lock()


def shared_redis(*, text: bool = False) -> redis.Redis:
    """This process's Redis client for the platform's own keys (pause set, limits,
    heartbeats, metrics, wake-ups): one per process and flavour (``text`` decodes replies
    to str), so no caller opens a connection per call. redis-py's pool reconnects after
    a fork and after Redis restarts. Short timeouts: a Redis that hangs costs a caller
    two seconds, not forever."""
    client = _clients.get(text)
    if client is None:
        with _clients_lock:
            client = _clients.get(text)
            if client is None:
                client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=2,
                    socket_connect_timeout=2,
                    decode_responses=text,
                )
                _clients[text] = client
    return client

"""Waking the relay early when a job comes due before its next tick.

The relay sleeps until the next job it knows of is due, or until its next full tick. A
job scheduled during that sleep for an earlier time (a short countdown, a retry backoff,
a rate-limit deferral) would wait for the end of the sleep; so whoever schedules one
pushes a token onto a Redis list and the relay, which sleeps in BLPOP on that list,
wakes up and looks again. Losing a token (Redis down) costs at most one tick of delay.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from queueing.broker import shared_redis

logger = logging.getLogger(__name__)

WAKE_KEY = "taskyard:relay-wake"
# A few tokens are as good as many; an unread list expires (no relay running).
_MAX_TOKENS = 4
_TOKEN_TTL_SECONDS = 60
# One BLPOP of the wait blocks at most this long (less on a client with a short socket
# timeout): a round trip or two a second for a sleeping relay.
_MAX_BLOCK_SECONDS = 2.0


def nudge_relay() -> None:
    """Wake a sleeping relay now. Never raises."""
    try:
        pipe = shared_redis(text=False).pipeline(transaction=False)
        pipe.rpush(WAKE_KEY, "1")
        pipe.ltrim(WAKE_KEY, -_MAX_TOKENS, -1)
        pipe.expire(WAKE_KEY, _TOKEN_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("could not wake the relay (it wakes on its tick): %r", exc)


def nudge_relay_if_soon(run_at: dt.datetime) -> None:
    """After commit, wake the relay if ``run_at`` comes before its next regular tick."""
    if (run_at - timezone.now()).total_seconds() < settings.RELAY_INTERVAL_SECONDS:
        transaction.on_commit(nudge_relay, robust=True)


def _longest_block(client: redis.Redis) -> float:
    """The longest single BLPOP on ``client``: half its socket timeout, so the reply
    arrives well before the client gives up on the socket (redis-py does not stretch
    the socket timeout for blocking commands: a 2 s BLPOP on a 1 s client raised
    TimeoutError after 1 s, and the relay slept through any later nudge)."""
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return _MAX_BLOCK_SECONDS if socket_timeout is None else socket_timeout / 2


def wait_for_nudge(client: redis.Redis, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True as soon as someone nudges. Falls back to a
    plain sleep if Redis does not answer."""
    deadline = timezone.now() + dt.timedelta(seconds=seconds)
    block = min(_longest_block(client), _MAX_BLOCK_SECONDS)
    try:
        while (remaining := (deadline - timezone.now()).total_seconds()) > 0.005:
            # A long wait is several short BLPOPs, each within the socket timeout.
            if client.blpop([WAKE_KEY], timeout=min(remaining, block)) is not None:
                client.delete(WAKE_KEY)  # one wake-up for a burst of tokens
                return True
    except redis.RedisError:
        remaining = (deadline - timezone.now()).total_seconds()
        if remaining > 0:
            time.sleep(remaining)
    return False

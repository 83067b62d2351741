"""The beat scheduler: django-celery-beat's DatabaseScheduler, but only one at a time.

Two beats started by mistake would each send every periodic job. This scheduler takes a
Redis lock before each tick; a second beat finds it held and waits, taking over only when
the first one stops renewing it (stopped or dead), after at most LOCK_TTL_SECONDS. On
taking over it reloads the schedule from the database, so it sees the last runs the
previous beat recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import redis
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from queueing.broker import RedisLock
from queueing.registry import BEAT_KEY, beat

logger = logging.getLogger(__name__)

LOCK_KEY = "taskyard:beat-lock"
# Renewed at every tick (at least every max_interval = 5 s); a dead beat's lock lapses
# after this, and a standby takes over.
LOCK_TTL_SECONDS = 30
# How often a standby beat checks whether the lock is free.
STANDBY_POLL_SECONDS = 5.0


class SingleBeatScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs) -> None:
        self._leading = False
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5
        )
        self._beat_lock = RedisLock(client, LOCK_KEY, f"{socket.gethostname()}/{os.getpid()}")
        super().__init__(*args, **kwargs)

    def _hold_lock(self) -> bool:
        try:
            if self._beat_lock.hold(LOCK_TTL_SECONDS):
                return True
        except redis.RedisError as exc:
            # Without Redis no beat can send anything anyway; do not run blind.
            logger.warning("beat lock: Redis unavailable (%r); not scheduling", exc)
        return False

    def tick(self, *args, **kwargs):
        leading = self._hold_lock()
        if leading and not self._leading:
            logger.warning("beat %s holds the beat lock: scheduling", self._beat_lock.owner)
            # Reload from the database: the previous beat may have run entries since.
            self._initial_read = True
            self._heap = None
        elif not leading and (self._leading or not hasattr(self, "_standby_logged")):
            logger.warning(
                "beat %s: another beat (%s) holds the beat lock; standing by",
                self._beat_lock.owner,
                self._beat_lock.holder() or "?",
            )
            self._standby_logged = True
        self._leading = leading
        if not leading:
            return STANDBY_POLL_SECONDS
        beat(BEAT_KEY)  # for health checks: a beat is scheduling
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            with contextlib.suppress(redis.RedisError):  # the lock lapses by itself
                self._beat_lock.release()

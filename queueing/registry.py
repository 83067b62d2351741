"""Live workers, beat and relay, as heartbeats in Redis: who is alive and which queues each
worker consumes right now, readable in a millisecond (the dashboard, health checks,
metrics and queueing.explain(job) need it; a control-broadcast inspect takes a full second).

- each worker process writes ``taskyard:workers`` field ``<hostname>`` = JSON
  ``{"queues": [...], "tasks": [...], "pid": ..., "at": <epoch s>}`` every
  WORKER_HEARTBEAT_SECONDS from a daemon thread started at worker_ready, and removes it at
  shutdown;
- the leading beat writes ``taskyard:beat-heartbeat`` at every tick;
- the relay writes ``taskyard:relay-heartbeat`` at every full tick.

A heartbeat older than three intervals counts as gone (a SIGKILLed worker cannot remove
its entry; stale entries are dropped when read).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import redis
from django.conf import settings

from queueing.broker import as_text, shared_redis

logger = logging.getLogger(__name__)

WORKERS_KEY = "taskyard:workers"
BEAT_KEY = "taskyard:beat-heartbeat"
RELAY_KEY = "taskyard:relay-heartbeat"
WORKER_HEARTBEAT_SECONDS = 3.0
STALE_AFTER_SECONDS = 3 * WORKER_HEARTBEAT_SECONDS


def live_workers(client: redis.Redis | None = None) -> dict[str, list[str]]:
    """Hostname -> queues it consumes, for workers with a fresh heartbeat."""
    return {name: list(e.get("queues", [])) for name, e in live_worker_entries(client).items()}


def live_worker_entries(client: redis.Redis | None = None) -> dict[str, dict]:
    """Hostname -> its heartbeat entry (queues, registered tasks, pid, time)."""
    client = client or shared_redis(text=True)
    now = time.time()
    alive: dict[str, dict] = {}
    stale = []
    for name, raw in client.hgetall(WORKERS_KEY).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            stale.append(name)
            continue
        if now - float(entry.get("at", 0)) > STALE_AFTER_SECONDS:
            stale.append(name)
        else:
            alive[as_text(name)] = entry
    if stale:
        client.hdel(WORKERS_KEY, *stale)
    return alive


def workers_per_queue(client: redis.Redis | None = None) -> dict[str, list[str]]:
    per_queue: dict[str, list[str]] = {name: [] for name in settings.TASKYARD_QUEUES}
    for worker, queues in sorted(live_workers(client).items()):
        for queue in queues:
            per_queue.setdefault(queue, []).append(worker)
    return per_queue


def beat(key: str) -> None:
    """Record a heartbeat of the beat or the relay. Never raises."""
    try:
        shared_redis(text=True).set(key, f"{time.time():.3f}", ex=3600)
    except redis.RedisError as exc:
        logger.debug("heartbeat %s not written: %r", key, exc)


def heartbeat_age(key: str, client: redis.Redis | None = None) -> float | None:
    """Seconds since the last heartbeat under ``key``; None if there is none."""
    value = (client or shared_redis(text=True)).get(key)
    return None if value is None else max(0.0, time.time() - float(value))


class WorkerHeartbeat(threading.Thread):
    """Writes this worker's entry every WORKER_HEARTBEAT_SECONDS until stopped."""

    def __init__(self, consumer) -> None:
        super().__init__(name="taskyard-heartbeat", daemon=True)
        self.consumer = consumer
        self.hostname = consumer.hostname
        self.stopped = threading.Event()

    def queues(self) -> list[str]:
        task_consumer = self.consumer.task_consumer
        if task_consumer is None:
            return []
        return sorted(queue.name for queue in task_consumer.queues)

    def configured(self) -> list[str]:
        """The queues this worker was started for, consumed or not: a paused queue is
        cancelled on the consumer but still served once resumed."""
        _started_for.update(self.queues())
        return sorted(_started_for)

    def tasks(self) -> list[str]:
        return sorted(n for n in self.consumer.app.tasks if not n.startswith("celery."))

    def write(self) -> None:
        entry = {
            "queues": self.queues(),
            "configured": self.configured(),
            "tasks": self.tasks(),
            "pid": os.getpid(),
            "at": time.time(),
        }
        shared_redis(text=True).hset(WORKERS_KEY, self.hostname, json.dumps(entry))

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.write()
                for hook in ON_HEARTBEAT:
                    hook()
            except Exception as exc:  # Redis down: try again next beat
                logger.debug("worker heartbeat not written: %r", exc)
            self.stopped.wait(WORKER_HEARTBEAT_SECONDS)

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(redis.RedisError):  # else the entry goes stale by itself
            shared_redis(text=True).hdel(WORKERS_KEY, self.hostname)


_heartbeat: WorkerHeartbeat | None = None
# Called after each heartbeat written (queueing/apps.py adds the message index's flush of
# receipts left over from an outage).
ON_HEARTBEAT: list[Callable[[], None]] = []
# The queues this worker process was started for (its -Q), noted before a paused queue
# is cancelled on its consumer (control/pause.py calls started_for()).
_started_for: set[str] = set()


def started_for(queues: Iterable[str]) -> None:
    _started_for.update(queues)


def configured_workers_per_queue(client: redis.Redis | None = None) -> dict[str, list[str]]:
    """Queue -> live workers started for it, whether or not they consume it right now
    (they do not while it is paused)."""
    per_queue: dict[str, list[str]] = {name: [] for name in settings.TASKYARD_QUEUES}
    for worker, entry in sorted(live_worker_entries(client).items()):
        for queue in entry.get("configured", entry.get("queues", [])):
            per_queue.setdefault(queue, []).append(worker)
    return per_queue


def on_worker_ready(sender=None, **_) -> None:
    global _heartbeat  # noqa: PLW0603
    _heartbeat = WorkerHeartbeat(sender)
    _heartbeat.start()


def on_worker_shutdown(**_) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()

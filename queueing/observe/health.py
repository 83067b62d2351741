"""Readiness checks: database, broker, a worker for every running queue, a fresh beat,
a relay that keeps up. Used by ``/health/ready`` and ``manage.py health``.

Each check returns ``{"ok": bool, ...details}``; the platform is ready when all are ok.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from queueing.broker import shared_redis
from queueing.control.pause import paused_queues_in_database
from queueing.models import Job, JobStatus
from queueing.registry import BEAT_KEY, RELAY_KEY, heartbeat_age, workers_per_queue


def check_database() -> dict:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def check_broker() -> dict:
    started = time.monotonic()
    shared_redis(text=True).ping()
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def check_workers() -> dict:
    """Every queue that must be served (HEALTH_WORKER_QUEUES, default all declared) and
    is not paused has at least one live worker."""
    required = settings.HEALTH_WORKER_QUEUES
    if required is None:
        required = list(settings.TASKYARD_QUEUES)
    paused = paused_queues_in_database()
    per_queue = workers_per_queue()
    missing = [q for q in required if q not in paused and not per_queue.get(q)]
    workers = {q: len(per_queue.get(q, [])) for q in required}
    return {"ok": not missing, "workers": workers, "queues_without_worker": missing}


def check_beat() -> dict:
    age = heartbeat_age(BEAT_KEY)
    limit = settings.HEALTH_BEAT_MAX_AGE_SECONDS
    return {
        "ok": age is not None and age <= limit,
        "age_seconds": _round(age),
        "max_age_seconds": limit,
    }


def check_relay() -> dict:
    """The relay ticks, and nothing due waits for it longer than HEALTH_RELAY_MAX_LAG."""
    age = heartbeat_age(RELAY_KEY)
    now = timezone.now()
    paused = paused_queues_in_database()
    oldest_due = (
        Job.objects.filter(status__in=(JobStatus.SCHEDULED, JobStatus.RETRYING), run_at__lte=now)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
    )
    oldest_unpublished = (
        Job.objects.filter(status=JobStatus.QUEUED, published_at__isnull=True)
        .exclude(queue__in=paused)
        .order_by("enqueued_at")
        .values_list("enqueued_at", flat=True)
        .first()
    )
    lags = [(now - at).total_seconds() for at in (oldest_due, oldest_unpublished) if at]
    lag = max(lags, default=0.0)
    heartbeat_limit = 3 * settings.RELAY_INTERVAL_SECONDS + 5
    limit = settings.HEALTH_RELAY_MAX_LAG_SECONDS
    return {
        "ok": age is not None and age <= heartbeat_limit and lag <= limit,
        "heartbeat_age_seconds": _round(age),
        "lag_seconds": _round(lag),
        "max_lag_seconds": limit,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def check_providers() -> dict:
    """Degraded, never down: an open breaker or a failed health check is reported, but
    the platform still serves and jobs wait in the ledger (ok stays true)."""
    from queueing.control.providers import provider_status
    from queueing.specs import provider_specs

    degraded = {}
    for spec in provider_specs().values():
        status = provider_status(spec)
        health = status["health"] or {}
        if status["state"] != "closed" or health.get("ok") == "False":
            degraded[spec.name] = {"state": status["state"], "health": health or None}
    return {"ok": True, "status": "degraded" if degraded else "ok", "degraded": degraded}


CHECKS: dict[str, Callable[[], dict]] = {
    "database": check_database,
    "broker": check_broker,
    "workers": check_workers,
    "beat": check_beat,
    "relay": check_relay,
    "providers": check_providers,
}


def readiness() -> tuple[bool, dict[str, dict]]:
    """Run every check; an exception is a failed check with its error class named."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return all(result["ok"] for result in results.values()), results

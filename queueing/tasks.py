"""Celery tasks of the platform core, declared like any app's (queueing.job)."""

from __future__ import annotations

from typing import Any

from queueing.api.contracts import DailyReportArgs, NoArgs, PingArgs
from queueing.worker.declaration import job

# A demo message longer than this is refused by the demo view (not by the task).
PING_MESSAGE_MAX_LENGTH = 200


# The demo task: every role that operates queues may run it (on its own queue).
@job(
    queue="default", name="queueing.ping", bind=True, api=PingArgs, roles=("manager", "dispatcher")
)
def ping(self: Any, message: str = "pong") -> dict:
    """Echo ``message`` with the name of the worker that ran it: the smallest proof that
    a web process, the broker, a worker and the result store are wired together."""
    return {"message": message, "worker": self.request.hostname}


# Maintenance: admins only (roles=(): no role besides enqueue_any).
@job(queue="maintenance", name="queueing.prune_jobs", api=NoArgs, roles=())
def prune_jobs() -> dict:
    """Delete finished jobs past their retention (seeded to run hourly by beat)."""
    from queueing.control.retention import prune

    return prune()


# The minute checks run on "default", not "maintenance": the maintenance queue has one
# slot, and a 20-minute backup holding it must not stop alerts or lose history. Unique:
# while one waits (a busy default queue), the next minute's adds nothing.
@job(queue="default", name="queueing.check_alerts", unique_key="queueing:check_alerts")
def check_alerts() -> dict:
    """Open, update and resolve alerts against the thresholds (seeded every minute)."""
    from queueing.observe.alerts import check

    return check()


@job(queue="external-api", name="queueing.check_providers", retry={"max_attempts": 1})
def check_providers() -> dict:
    """Health-check every declared provider (seeded every minute); results in Redis for
    the admin's Providers page, the API, /metrics and readiness."""
    from queueing.control.providers import check_health
    from queueing.specs import provider_specs

    return {name: check_health(spec) for name, spec in provider_specs().items()}


# History and the daily report (docs/monitoring.md): the lowest priority, so they never
# delay a domain job. The snapshot is on "default" (see check_alerts); a late one
# catches up the buckets it missed.
@job(
    queue="default",
    name="queueing.snapshot_queue_stats",
    priority=9,
    unique_key="queueing:snapshot_queue_stats",
    api=NoArgs,
    roles=(),
)
def snapshot_queue_stats() -> dict:
    """Write the 5-minute buckets that ended since the last one written into the history
    (seeded every 5 min)."""
    from queueing.observe.history import snapshot

    return snapshot()


@job(queue="maintenance", name="queueing.prune_queue_stats", priority=9)
def prune_queue_stats() -> dict:
    """Delete history older than HISTORY_RETENTION_DAYS (seeded daily, 02:00 business)."""
    from queueing.observe.history import prune

    return prune()


@job(
    queue="maintenance",
    name="queueing.daily_report",
    priority=9,
    api=DailyReportArgs,
    roles=(),
)
def daily_report(day: str | None = None) -> dict:
    """Build, store and mail the report of ``day`` (ISO date; default: yesterday in the
    business time zone). Seeded at 00:00 business time."""
    import datetime as dt

    from queueing.observe.report import create

    report = create(dt.date.fromisoformat(day) if day else None)
    return {"day": report.day.isoformat(), "emailed": report.emailed_at is not None}

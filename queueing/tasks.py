"""Celery tasks of the platform core."""

from __future__ import annotations

from celery import shared_task

# A demo message longer than this is refused by the demo view (not by the task).
PING_MESSAGE_MAX_LENGTH = 200


@shared_task(bind=True, name="queueing.ping", api_contract="queueing.api.contracts.PingArgs")
def ping(self, message: str = "pong") -> dict:
    """Echo ``message`` with the name of the worker that ran it: the smallest proof that
    a web process, the broker, a worker and the result store are wired together."""
    return {"message": message, "worker": self.request.hostname}


@shared_task(name="queueing.prune_jobs", api_contract="queueing.api.contracts.NoArgs")
def prune_jobs() -> dict:
    """Delete finished jobs past their retention (seeded to run hourly by beat)."""
    from queueing.retention import prune

    return prune()


@shared_task(name="queueing.check_alerts")
def check_alerts() -> dict:
    """Open, update and resolve alerts against the thresholds (seeded every minute)."""
    from queueing.alerts import check

    return check()

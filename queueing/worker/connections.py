"""Database connections of worker processes: kept across jobs, closed when unusable.

Celery's Django fixup would close every connection before and after each task (a new
PostgreSQL backend per job, most of the database's CPU per job in issue 18's profile);
config/settings.py puts its recycling out of reach (CELERY_DB_REUSE_MAX). Instead, the
worker treats each task the way Django treats a request: before it starts, a connection
that errored and no longer answers, or that is older than WORKER_DB_CONN_MAX_AGE, is
closed, and the next query opens a fresh one. A healthy connection costs nothing here
(no query): Django only pings a connection that saw an error.

PgBouncer in transaction mode works with this (no session state is relied on between
jobs); see docs/performance.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import close_old_connections, connections


def keep_connections(**_: object) -> None:
    """Celery worker_init / worker_process_init: this process's connections live
    WORKER_DB_CONN_MAX_AGE seconds (0: closed after every job, as Celery's default), and
    are not pinged before each job (CONN_HEALTH_CHECKS would cost a ``SELECT 1`` per
    job): the ledger's claim and outcome retry once on a new connection when the kept
    one was dropped (queueing/ledger/transitions.py ``claim_reconnecting``)."""
    for alias in connections:
        connections[alias].settings_dict["CONN_MAX_AGE"] = settings.WORKER_DB_CONN_MAX_AGE
        connections[alias].settings_dict["CONN_HEALTH_CHECKS"] = False


def on_task_boundary(sender=None, **_: object) -> None:
    """Celery task_prerun/task_postrun: drop connections that are broken or too old."""
    request = getattr(sender, "request", None)
    if request is not None and getattr(request, "is_eager", False):
        return  # an eager call runs inside the caller's request and transaction
    close_old_connections()

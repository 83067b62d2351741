"""Celery's result backend (django-celery-results), surviving a dropped connection.

Celery writes result rows from processes that keep their database connection for a long
time: the worker's main process (a revoked or expired message), its pool processes
(failures and retries; successes of tracked jobs are the ledger's own write). When
PostgreSQL drops that connection (restart, failover, pg_terminate_backend, PgBouncer
recycling), the stock backend retries only InterfaceError; the OperationalError a
closed psycopg 3 connection raises would escape, and in the main process it stops the
worker ("Unrecoverable error"). This backend closes the broken connection and lets
Celery's retry loop (CELERY_RESULT_BACKEND_ALWAYS_RETRY) run the write again on a new
one, outside transactions only: inside one, the caller's transaction is lost anyway.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError, connection
from django_celery_results.backends.database import DatabaseBackend


class ReconnectingDatabaseBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, InterfaceError | OperationalError) and not connection.in_atomic_block:
            connection.close()
            return True
        return False

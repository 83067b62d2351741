"""Broker connections for control broadcasts (pause, resume, revoke, inspect)."""

from __future__ import annotations

from kombu import Connection


def control_connection() -> Connection:
    """A new broker connection, to use as ``with control_connection() as conn:``.

    Control commands are rare, so each gets its own connection instead of one from the
    app's pool: a pooled connection goes stale when Redis restarts, and a broadcast
    written to it fails with a broken pipe instead of reconnecting.
    """
    from config.celery import app

    return app.connection_for_write()

"""Billing tests: the Stripe fake's address for every worker process.

Workers (the session's and the ones a test starts) read Stripe's base URL from
STRIPE_API_BASE when they start. It is set here, at collection, before any worker
starts, to a port the billing tests serve their Stripe fake on, so whichever worker
claims a charge job talks to that fake.
"""

from __future__ import annotations

import os
import socket

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


STRIPE_PORT = int(os.environ.setdefault("BILLING_TEST_STRIPE_PORT", str(_free_port())))
os.environ.setdefault("STRIPE_API_BASE", f"http://127.0.0.1:{STRIPE_PORT}")


@pytest.fixture
def kinds(db):
    """The notifications app's seed kinds and templates (payment_reminder,
    payment_receipt...): a transactional test's flush removes the migration's rows."""
    from notifications import seed
    from notifications.models import MessageKind, Template

    seed.seed(MessageKind, Template)

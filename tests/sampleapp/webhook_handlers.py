"""The sample app's webhook handlers (discovered by datasync.inbound)."""

from __future__ import annotations

from typing import Any

from datasync.inbound import handles
from tests.sideeffects.models import SideEffect


# payment_intent.created: billing handles succeeded/payment_failed (one handler per type).
@handles("stripe", "payment_intent.created")
def record_payment(event: Any) -> str:
    """Leave one row per processing, so a test counts how often an event was handled."""
    intent = event.payload["data"]["object"]
    SideEffect.objects.create(
        job_id=event.job_id, key=f"payment:{intent['id']}", attempt=event.attempts
    )
    return intent["id"]


@handles("airtable", "record.broken")
def always_fails(event: Any) -> None:
    raise RuntimeError("the record cannot be applied")

"""Stripe's payment events, the only source of a payment's outcome (docs/billing.md).

Discovered by datasync.inbound; runs inside the webhook's processing job, so a failure
retries by the platform's policy. Idempotent: processing an event again changes nothing.
"""

from __future__ import annotations

from typing import Any

from billing import payments
from datasync.inbound import handles


@handles("stripe", "payment_intent.succeeded", "payment_intent.payment_failed")
def record_payment(event: Any) -> str:
    intent = event.payload["data"]["object"]
    return payments.record_intent_event(event.event_type, intent)

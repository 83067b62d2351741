"""Delivery statuses from the providers, through datasync's inbound webhooks
(docs/webhooks.md): datasync verifies, stores and de-duplicates each callback; these run
in its processing job."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from datasync.inbound import handles
from notifications import tracking


@handles(
    "twilio",
    "message.accepted",
    "message.queued",
    "message.sending",
    "message.sent",
    "message.delivered",
    "message.undelivered",
    "message.failed",
)
def twilio_message_status(event: Any) -> dict:
    with transaction.atomic():  # the status and a suppression it causes, together
        return tracking.twilio_status(event.payload, event.received_at)


@handles(
    "sendgrid",
    "processed",
    "deferred",
    "delivered",
    "bounce",
    "dropped",
    "open",
    "click",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "batch",
)
def sendgrid_events(event: Any) -> dict:
    with transaction.atomic():  # a bounce's status and its suppression, together
        return tracking.sendgrid_events(event.payload, event.received_at)

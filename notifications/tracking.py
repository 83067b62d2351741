"""Delivery statuses and engagement coming back from the providers (Twilio status
callbacks, SendGrid events), through datasync's inbound webhooks (webhook_handlers.py).

Callbacks can arrive out of order and more than once: a status only moves forward
(queued < sent < a final status), and a bounce or complaint suppresses the address.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db.models import Q
from django.utils import timezone

from notifications.models import (
    Channel,
    Message,
    MessageStatus,
    Suppression,
    SuppressionReason,
)
from queueing import TransientError

logger = logging.getLogger(__name__)

TWILIO_STATUSES = {
    "accepted": MessageStatus.SENT,
    "queued": MessageStatus.SENT,
    "sending": MessageStatus.SENT,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
}
# Twilio error codes that mean "never again to this number" (unknown destination,
# landline, the recipient replied STOP).
TWILIO_SUPPRESSING_CODES = {"30005", "30006", "21610"}
SENDGRID_STATUSES = {
    "delivered": MessageStatus.DELIVERED,
    "bounce": MessageStatus.BOUNCED,
    "dropped": MessageStatus.BOUNCED,
}
SENDGRID_SUPPRESSIONS = {
    "bounce": SuppressionReason.BOUNCE,
    "dropped": SuppressionReason.BOUNCE,
    "spamreport": SuppressionReason.COMPLAINT,
    "unsubscribe": SuppressionReason.UNSUBSCRIBE,
    "group_unsubscribe": SuppressionReason.UNSUBSCRIBE,
}
# How long a callback may wait for its message's provider id to be written (the
# provider calls back within milliseconds of answering the send).
UNKNOWN_ID_GRACE = dt.timedelta(minutes=10)


def _earlier_than(status: str) -> list[str]:
    if status == MessageStatus.SENT:
        return [MessageStatus.QUEUED]
    return [MessageStatus.QUEUED, MessageStatus.SENT]


def advance(
    message_id: int, status: str, *, error: str = "", at: dt.datetime | None = None
) -> bool:
    """Move the message to ``status`` unless it is already there or further."""
    fields: dict[str, Any] = {"status": status}
    now = at or timezone.now()
    if status == MessageStatus.DELIVERED:
        fields["delivered_at"] = now
    if status == MessageStatus.SENT:
        fields["sent_at"] = now
    if error:
        fields["error"] = error[:2000]
    return bool(
        Message.objects.filter(id=message_id, status__in=_earlier_than(status)).update(**fields)
    )


def suppress(channel: str, address: str, reason: str, detail: str = "") -> None:
    """Suppress ``address`` on ``channel`` (once: the first reason is kept)."""
    key = Suppression.address_key(channel, address)
    if key:
        Suppression.objects.get_or_create(
            channel=channel, address=key, defaults={"reason": reason, "detail": detail[:300]}
        )


def _message_or_retry(lookup: Q, received_at: dt.datetime, what: str) -> Message | None:
    message = Message.objects.filter(lookup).first()
    if message is None and timezone.now() - received_at < UNKNOWN_ID_GRACE:
        # The callback overtook the send job's own write of the provider id.
        raise TransientError(f"{what}: no message yet, retrying")
    return message


def twilio_status(params: dict[str, Any], received_at: dt.datetime) -> dict[str, Any]:
    """Apply one Twilio status callback."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    raw = params.get("MessageStatus") or params.get("SmsStatus") or ""
    status = TWILIO_STATUSES.get(raw)
    if not sid or status is None:
        return {"ignored": f"{sid or 'no sid'} {raw or 'no status'}"}
    message = _message_or_retry(
        Q(channel=Channel.SMS, provider_message_id=sid), received_at, f"twilio {sid}"
    )
    if message is None:
        return {"ignored": f"{sid}: not ours"}
    code = str(params.get("ErrorCode") or "")
    changed = advance(message.id, status, error=f"Twilio error {code}" if code else "")
    if code in TWILIO_SUPPRESSING_CODES:
        suppress(Channel.SMS, message.to, SuppressionReason.UNDELIVERABLE, f"Twilio {code}")
    return {"message": message.id, "status": raw, "changed": changed}


def sendgrid_events(events: list[dict[str, Any]], received_at: dt.datetime) -> dict[str, Any]:
    """Apply a batch of SendGrid events (anymail's metadata carries our message id)."""
    applied = 0
    for event in events:
        name = str(event.get("event", ""))
        ours = str(event.get("taskyard_message_id") or "")
        anymail_id = str(event.get("anymail_id") or "")
        lookup = Q(id=int(ours)) if ours.isdigit() else Q(provider_message_id=anymail_id)
        if not (ours.isdigit() or anymail_id):
            continue
        message = _message_or_retry(
            Q(channel=Channel.EMAIL) & lookup, received_at, f"sendgrid {ours or anymail_id}"
        )
        if message is None:
            continue
        when = _timestamp(event.get("timestamp")) or received_at
        if name in SENDGRID_STATUSES:
            reason = str(event.get("reason") or event.get("response") or "")
            bad = SENDGRID_STATUSES[name] != MessageStatus.DELIVERED
            advance(message.id, SENDGRID_STATUSES[name], error=reason if bad else "", at=when)
        elif name == "open":
            Message.objects.filter(id=message.id, opened_at__isnull=True).update(opened_at=when)
        elif name == "click":
            Message.objects.filter(id=message.id, clicked_at__isnull=True).update(clicked_at=when)
        if name in SENDGRID_SUPPRESSIONS:
            email = str(event.get("email") or message.to)
            suppress(
                Channel.EMAIL, email, SENDGRID_SUPPRESSIONS[name], str(event.get("reason", ""))
            )
            logger.info("email %s suppressed after %s (message %s)", email, name, message.id)
        applied += 1
    return {"events": len(events), "applied": applied}


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError):
        return None

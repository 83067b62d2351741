"""Sending notifications: the one entry point other apps call (:func:`send`), and the
delivery of one queued message (:func:`deliver`). Plain functions, testable without
Celery; the jobs in tasks.py call them. Design: docs/notifications.md.

A message goes queued → sent → delivered / bounced / failed, or suppressed (opted out,
unsubscribed, a bounced address) or cancelled (its booking was). Quiet hours hold a
non-urgent message: its delivery job ends and a new one is scheduled for the end of the
recipient's quiet hours.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

import queueing
from notifications import rendering
from notifications.channels import Undeliverable, channel_for
from notifications.models import (
    Channel,
    Message,
    MessageKind,
    MessageStatus,
    Preference,
    Recipient,
    Suppression,
    Template,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "notifications.unsubscribe"
# Channels tried, in order, when a send names none: every one with a template for the
# kind, an address for the recipient and no opt-out.
DEFAULT_CHANNEL_ORDER = (Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.WEBHOOK)


class NotificationError(ValueError):
    """A send that cannot work as asked (unknown kind or recipient, missing variables,
    no template): refused before anything is queued."""


def _kind(name: str) -> MessageKind:
    kind = MessageKind.objects.filter(name=name).first()
    if kind is None:
        known = ", ".join(MessageKind.objects.values_list("name", flat=True)) or "none"
        raise NotificationError(f"unknown message kind {name!r}; kinds: {known}")
    return kind


def recipient_context(recipient: Recipient) -> dict[str, Any]:
    """What every message knows about its recipient (a caller's context wins)."""
    return {
        "customer": recipient.name,
        "email": recipient.email,
        "phone": recipient.phone,
        "recipient_ref": recipient.ref,
        "recipient_name": recipient.name,
    }


def unsubscribe_token(recipient: Recipient, kind: str) -> str:
    return signing.dumps({"r": recipient.id, "k": kind}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_url(recipient: Recipient, kind: str) -> str:
    base = settings.NOTIFICATIONS_PUBLIC_URL.rstrip("/")
    return f"{base}/api/v1/queue/notifications/unsubscribe/{unsubscribe_token(recipient, kind)}"


def unsubscribe(token: str, *, every_kind: bool = False) -> Recipient:
    """Opt the token's recipient out of its kind's emails (or of every kind's); raise
    signing.BadSignature for a forged or mangled token."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    recipient = Recipient.objects.get(id=data["r"])
    Preference.objects.update_or_create(
        recipient=recipient,
        kind="*" if every_kind else data["k"],
        channel=Channel.EMAIL,
        defaults={"opted_in": False},
    )
    return recipient


def opted_in(recipient: Recipient, kind: str, channel: str) -> bool:
    """The recipient's choice for (kind, channel): the kind's own row, else ``*``'s,
    else in."""
    rows = {
        row.kind: row.opted_in
        for row in Preference.objects.filter(
            recipient=recipient, channel=channel, kind__in=(kind, "*")
        )
    }
    return rows.get(kind, rows.get("*", True))


def is_suppressed(channel: str, address: str) -> bool:
    return bool(address) and Suppression.objects.filter(channel=channel, address=address).exists()


def template_for(kind: MessageKind, channel: str, locale: str) -> Template | None:
    """The newest version for the locale, else its language, else English."""
    language = locale.split("-", maxsplit=1)[0].split("_", maxsplit=1)[0]
    for wanted in dict.fromkeys((locale, language, "en")):
        found = (
            Template.objects.filter(kind=kind, channel=channel, locale=wanted)
            .order_by("-version")
            .first()
        )
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class Target:
    """One message a send will make: a channel, its template and the address."""

    channel: str
    template: Template
    address: str
    endpoint: WebhookEndpoint | None = None

    def key(self, dedupe_key: str | None) -> str | None:
        if not dedupe_key:
            return None
        return f"{dedupe_key}:{self.channel}" + (f":{self.endpoint.id}" if self.endpoint else "")


def plan(
    kind: MessageKind,
    recipient: Recipient,
    context: Mapping[str, Any],
    channel: str | None,
    templates: dict[tuple[str, str], Template | None] | None = None,
) -> tuple[dict[str, Any], list[Target]]:
    """The full context and the messages of one send (NotificationError when it cannot
    work); ``templates`` caches template lookups across recipients."""
    full = {**recipient_context(recipient), **dict(context)}
    missing = rendering.missing_variables(kind.variables, full)
    if missing:
        raise NotificationError(f"{kind.name}: the context lacks {', '.join(missing)}")
    if channel is not None:
        channel_for(channel)  # ValueError naming the channels
    cache = {} if templates is None else templates
    targets = []
    for name in [channel] if channel else list(DEFAULT_CHANNEL_ORDER):
        if (name, recipient.locale) not in cache:
            cache[(name, recipient.locale)] = template_for(kind, name, recipient.locale)
        template = cache[(name, recipient.locale)]
        if template is None:
            if channel:
                raise NotificationError(f"{kind.name} has no {name} template")
            continue
        found: list[tuple[str, WebhookEndpoint | None]]
        if name == Channel.WEBHOOK:
            endpoints = recipient.webhook_endpoints.filter(active=True)
            found = [(e.url, e) for e in endpoints if not e.kinds or kind.name in e.kinds]
        else:
            found = [(channel_for(name).address(recipient), None)]
        targets += [Target(name, template, a, e) for a, e in found if a or channel]
    return full, targets


def send(
    kind: str,
    recipient_ref: str,
    context: Mapping[str, Any],
    *,
    channel: str | None = None,
    urgent: bool = False,
    send_at: dt.datetime | None = None,
    dedupe_key: str | None = None,
    booking_id: int | None = None,
    expires_at: dt.datetime | None = None,
) -> list[Message]:
    """Queue ``kind`` for the recipient with ref ``recipient_ref``, on ``channel`` or on
    every channel the recipient can and wants to get it on; return the messages (an
    existing one when ``dedupe_key`` was used before: at most one per key and channel).

    Runs in the caller's transaction: its rollback leaves no message and no job.
    NotificationError when the kind or recipient is unknown, the context lacks one of
    the kind's variables, or the named channel has no template."""
    message_kind = _kind(kind)
    recipient = Recipient.objects.filter(ref=recipient_ref).first()
    if recipient is None:
        raise NotificationError(f"unknown recipient {recipient_ref!r}")
    full, targets = plan(message_kind, recipient, context, channel)
    messages = []
    for target in targets:
        key = target.key(dedupe_key)
        existing = Message.objects.filter(dedupe_key=key).first() if key else None
        if existing is not None:
            messages.append(existing)
            continue
        message = build_message(
            message_kind,
            recipient,
            target,
            full,
            key,
            opted=opted_in(recipient, kind, target.channel),
            suppressed=is_suppressed(target.channel, target.address),
            urgent=urgent,
            send_at=send_at,
            booking_id=booking_id,
            expires_at=expires_at,
        )
        try:
            with transaction.atomic():
                message.save()
        except IntegrityError:
            # A concurrent send of the same key won: its message is the one.
            messages.append(Message.objects.get(dedupe_key=key))
            continue
        enqueue_deliveries([message])
        messages.append(message)
    return messages


def build_message(
    kind: MessageKind,
    recipient: Recipient,
    target: Target,
    context: dict[str, Any],
    dedupe_key: str | None,
    *,
    opted: bool,
    suppressed: bool,
    **fields: Any,
) -> Message:
    """The rendered, unsaved message; suppressed (not sent) when the recipient opted out
    or the address is suppressed."""
    if target.channel == Channel.EMAIL:
        context = {**context, "unsubscribe_url": unsubscribe_url(recipient, kind.name)}
    status, error = MessageStatus.QUEUED, ""
    if not target.address:
        status, error = MessageStatus.FAILED, f"the recipient has no {target.channel} address"
    elif not opted:
        status, error = MessageStatus.SUPPRESSED, f"opted out of {kind.name} by {target.channel}"
    elif suppressed:
        status, error = MessageStatus.SUPPRESSED, "the address is suppressed"
    return Message(
        kind=kind.name,
        channel=target.channel,
        recipient=recipient,
        template=target.template,
        template_version=target.template.version,
        webhook_endpoint=target.endpoint,
        dedupe_key=dedupe_key,
        to=target.address,
        subject=rendering.render(target.template.subject, context),
        body=rendering.render(target.template.body, context),
        context=context,
        status=status,
        error=error,
        **fields,
    )


def enqueue_deliveries(messages: list[Message]) -> None:
    """The delivery job of each saved, queued message, its id written back."""
    queued = [m for m in messages if m.status == MessageStatus.QUEUED]
    for message in queued:
        message.job_id = enqueue_delivery(message, run_at=message.send_at).id
    Message.objects.bulk_update(queued, ["job_id"])


def enqueue_delivery(message: Message, *, run_at: dt.datetime | None = None) -> queueing.Job:
    """The delivery job of ``message`` (one per message and run time)."""
    from notifications.tasks import DELIVERY_TASKS

    stamp = run_at.isoformat() if run_at else "now"
    return queueing.enqueue(
        DELIVERY_TASKS[message.channel],
        kwargs={"message_id": message.id},
        queue=settings.NOTIFICATIONS_QUEUE,
        run_at=run_at,
        unique_key=f"notifications:message:{message.id}:{stamp}",
    )


def quiet_until(recipient: Recipient, now: dt.datetime) -> dt.datetime | None:
    """When the recipient's quiet hours end, if ``now`` is inside them; else None."""
    start, end = recipient.quiet_start, recipient.quiet_end
    if start is None or end is None or start == end:
        return None
    zone = zoneinfo.ZoneInfo(recipient.time_zone)
    local = now.astimezone(zone)
    moment = local.time()
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if not inside:
        return None
    ends = dt.datetime.combine(local.date(), end, tzinfo=zone)
    if ends <= local:
        ends += dt.timedelta(days=1)
    return ends


def _finish(message_id: int, status: str, **fields: Any) -> int:
    """Move a queued message to a final or sent status (conditional UPDATE)."""
    return Message.objects.filter(id=message_id, status=MessageStatus.QUEUED).update(
        status=status, **fields
    )


def deliver(message_id: int) -> dict[str, Any]:
    """Send one queued message now, or hold it (quiet hours), or settle it without
    sending (expired, suppressed, opted out). Exceptions of the provider call propagate
    for the job's retry policy; Undeliverable marks the message failed."""
    message = Message.objects.select_related("recipient").filter(id=message_id).first()
    if message is None:
        return {"skipped": f"no message {message_id}"}
    if message.status != MessageStatus.QUEUED:
        return {"skipped": f"message {message_id} is {message.status}"}
    now = timezone.now()
    if message.expires_at and now >= message.expires_at:
        _finish(message.id, MessageStatus.FAILED, error="expired before it could be sent")
        return {"message": message.id, "status": "expired"}
    if not opted_in(message.recipient, message.kind, message.channel):
        _finish(message.id, MessageStatus.SUPPRESSED, error="opted out")
        return {"message": message.id, "status": MessageStatus.SUPPRESSED}
    if is_suppressed(message.channel, message.to):
        _finish(message.id, MessageStatus.SUPPRESSED, error="the address is suppressed")
        return {"message": message.id, "status": MessageStatus.SUPPRESSED}
    if not message.urgent:
        held = quiet_until(message.recipient, now)
        if held is not None:
            return _hold(message, held)
    try:
        result = channel_for(message.channel).send(message)
    except Undeliverable as exc:
        _finish(message.id, MessageStatus.FAILED, error=str(exc)[:2000])
        logger.warning("message %s: undeliverable: %s", message.id, exc)
        return {"message": message.id, "status": MessageStatus.FAILED, "error": str(exc)}
    except Exception as exc:
        Message.objects.filter(id=message.id).update(error=repr(exc)[:2000])
        raise
    sent_at = timezone.now()
    # The provider's callback may have moved the status on already (SendGrid's events
    # name our id): the send's own facts are written whatever the status is now.
    Message.objects.filter(id=message.id).update(
        provider_message_id=result.provider_message_id,
        cost=result.cost,
        cost_unit=result.cost_unit,
        sent_at=sent_at,
        held_until=None,
        error="",
    )
    _finish(
        message.id,
        MessageStatus.DELIVERED if result.delivered else MessageStatus.SENT,
        delivered_at=sent_at if result.delivered else None,
    )
    return {"message": message.id, "status": "sent", "id": result.provider_message_id}


def _hold(message: Message, until: dt.datetime) -> dict[str, Any]:
    if message.expires_at and until >= message.expires_at:
        _finish(message.id, MessageStatus.FAILED, error="quiet hours last past its expiry")
        return {"message": message.id, "status": "expired in quiet hours"}
    job = enqueue_delivery(message, run_at=until)
    Message.objects.filter(id=message.id).update(held_until=until, job_id=job.id)
    logger.info("message %s: held by quiet hours until %s (job %s)", message.id, until, job.id)
    return {"message": message.id, "held_until": until.isoformat(), "job": str(job.id)}


def history(recipient_ref: str) -> Any:
    """The recipient's messages, newest first."""
    return Message.objects.filter(recipient__ref=recipient_ref).order_by("-created_at", "-id")


def recipients_in_segment(segment: str) -> list[str]:
    """The refs of a segment: ``customers``, ``drivers`` or ``all``."""
    rows = Recipient.objects.all()
    if segment in ("customers", "drivers"):
        rows = rows.filter(kind=segment.removesuffix("s"))
    return list(rows.order_by("id").values_list("ref", flat=True))


def cancel_booking_messages(booking_id: int) -> int:
    """Cancel the booking's messages that have not gone out yet."""
    return Message.objects.filter(Q(booking_id=booking_id), status=MessageStatus.QUEUED).update(
        status=MessageStatus.CANCELLED, error="the booking was cancelled"
    )

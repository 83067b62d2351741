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
from django.utils import timezone

import queueing
from notifications import rendering, tracking
from notifications.channels import Undeliverable, channel_for
from notifications.models import (
    Booking,
    BookingStatus,
    Channel,
    Message,
    MessageKind,
    MessageStatus,
    Preference,
    Recipient,
    Suppression,
    SuppressionReason,
    Template,
    WebhookEndpoint,
)
from queueing import Job, JobStatus, ProviderDeferred, RateLimited

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


# The context every recipient gives its messages (recipient_context's keys).
RECIPIENT_VARIABLES = ("customer", "email", "phone", "recipient_ref", "recipient_name")


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
    """Whether ``address`` is suppressed on ``channel`` (Suppression.address_key: an
    email address in any case)."""
    key = Suppression.address_key(channel, address)
    return bool(key) and Suppression.objects.filter(channel=channel, address=key).exists()


# The locale whose templates every kind is written in first: the last fallback.
DEFAULT_LOCALE = "en"


def template_for(kind: MessageKind, channel: str, locale: str) -> Template | None:
    """The newest version for the locale (``nl-BE``, ``nl_be``: any case, ``-`` or
    ``_``), else its language (``nl``), else DEFAULT_LOCALE; None when the kind has none
    of these on ``channel``."""
    region = locale.strip().replace("_", "-")
    language = region.split("-", maxsplit=1)[0]
    for wanted in dict.fromkeys(name.lower() for name in (region, language, DEFAULT_LOCALE)):
        found = (
            Template.objects.filter(kind=kind, channel=channel, locale__iexact=wanted)
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
    try:
        # A model object or a date in the context would reach the template's attribute
        # lookups and fail the message's save after rendering: refused here, by name.
        full = rendering.json_values({**recipient_context(recipient), **dict(context)})
    except rendering.TemplateProblem as exc:
        raise NotificationError(f"{kind.name}: the context's {exc}") from None
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
    or the address is suppressed. NotificationError when the template does not render
    (a row written around ``Template.save`` with a tag outside the sandbox)."""
    if target.channel == Channel.EMAIL:
        context = {**context, "unsubscribe_url": unsubscribe_url(recipient, kind.name)}
    status, error = MessageStatus.QUEUED, ""
    if not target.address:
        status, error = MessageStatus.FAILED, f"the recipient has no {target.channel} address"
    elif not opted:
        status, error = MessageStatus.SUPPRESSED, f"opted out of {kind.name} by {target.channel}"
    elif suppressed:
        status, error = MessageStatus.SUPPRESSED, "the address is suppressed"
    try:
        subject = rendering.render(target.template.subject, context)
        body = rendering.render(target.template.body, context)
    except rendering.TemplateProblem as exc:
        raise NotificationError(f"template {target.template}: {exc}") from None
    return Message(
        kind=kind.name,
        channel=target.channel,
        recipient=recipient,
        template=target.template,
        template_version=target.template.version,
        webhook_endpoint=target.endpoint,
        dedupe_key=dedupe_key,
        to=target.address,
        subject=subject,
        body=body,
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


def fail(message: Message, error: str, *, provider_failure: bool = True) -> bool:
    """Mark a queued message failed (once: a conditional UPDATE); True if this call did.

    A provider failure of a webhook message counts once against its endpoint's failure
    streak here, at the message's final failure, not at each attempt."""
    if not _finish(message.id, MessageStatus.FAILED, error=error[:2000]):
        return False
    if provider_failure and message.channel == Channel.WEBHOOK and message.webhook_endpoint_id:
        from notifications.channels.webhook import record_failure

        record_failure(message.webhook_endpoint_id, error)
    return True


def stale_booking(message: Message) -> str:
    """Why a booking's message must not go out any more ("" when it still may): the
    booking was cancelled, or moved since the message was made (a reminder's message
    expires at the pickup time it was made for)."""
    if message.booking_id is None:
        return ""
    booking = Booking.objects.filter(id=message.booking_id).only("status", "scheduled_for").first()
    if booking is None:
        return "the booking was deleted"
    if booking.status == BookingStatus.CANCELLED:
        return "the booking was cancelled"
    if message.expires_at is not None and message.expires_at != booking.scheduled_for:
        return f"the booking moved to {booking.scheduled_for.isoformat()}"
    return ""


def _settle_unsent(message: Message, now: dt.datetime) -> dict[str, Any] | None:
    """The outcome of a queued message that must not be sent now (its booking cancelled
    or moved, expired, opted out, suppressed, quiet hours), or None to send it."""
    stale = stale_booking(message)
    if stale:
        _finish(message.id, MessageStatus.CANCELLED, error=stale)
        logger.info("message %s (job %s): not sent: %s", message.id, message.job_id, stale)
        return {"message": message.id, "status": MessageStatus.CANCELLED, "reason": stale}
    if message.expires_at and now >= message.expires_at:
        fail(message, "expired before it could be sent", provider_failure=False)
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
    return None


def deliver(message_id: int, *, last_attempt: bool = False) -> dict[str, Any]:
    """Send one queued message now, or hold it (quiet hours), or settle it without
    sending (expired, its booking cancelled or moved, suppressed, opted out). Exceptions
    of the provider call propagate for the job's retry policy (the message is marked
    failed first when ``last_attempt``); Undeliverable marks the message failed and, when
    it says so, suppresses the address."""
    message = Message.objects.select_related("recipient").filter(id=message_id).first()
    if message is None:
        return {"skipped": f"no message {message_id}"}
    if message.status != MessageStatus.QUEUED:
        return {"skipped": f"message {message_id} is {message.status}"}
    settled = _settle_unsent(message, timezone.now())
    if settled is not None:
        return settled
    try:
        result = channel_for(message.channel).send(message)
    except Undeliverable as exc:
        if exc.suppress_address:
            tracking.suppress(
                message.channel, message.to, SuppressionReason.UNDELIVERABLE, str(exc)
            )
        fail(message, str(exc))
        logger.warning("message %s (job %s): undeliverable: %s", message.id, message.job_id, exc)
        return {"message": message.id, "status": MessageStatus.FAILED, "error": str(exc)}
    except (RateLimited, ProviderDeferred):
        raise  # a deferral: no attempt spent, nothing failed
    except Exception as exc:
        Message.objects.filter(id=message.id).update(error=repr(exc)[:2000])
        if last_attempt:
            fail(message, f"the last attempt failed: {exc!r}")
            logger.warning(
                "message %s (job %s): failed for good: %r", message.id, message.job_id, exc
            )
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
        fail(message, "quiet hours last past its expiry", provider_failure=False)
        return {"message": message.id, "status": "expired in quiet hours"}
    job = enqueue_delivery(message, run_at=until)
    Message.objects.filter(id=message.id).update(held_until=until, job_id=job.id)
    logger.info("message %s: held by quiet hours until %s (job %s)", message.id, until, job.id)
    return {"message": message.id, "held_until": until.isoformat(), "job": str(job.id)}


def history(recipient_ref: str) -> Any:
    """The recipient's messages, newest first."""
    return Message.objects.filter(recipient__ref=recipient_ref).order_by("-created_at", "-id")


# The segments a batch may go to.
SEGMENTS = ("customers", "drivers", "all")


def recipients_in_segment(segment: str) -> list[str]:
    """The refs of a segment: ``customers``, ``drivers`` or ``all`` (NotificationError
    for any other name: a misspelt segment must not mean everybody)."""
    if segment not in SEGMENTS:
        raise NotificationError(f"unknown segment {segment!r}; segments: {', '.join(SEGMENTS)}")
    rows = Recipient.objects.all()
    if segment in ("customers", "drivers"):
        rows = rows.filter(kind=segment.removesuffix("s"))
    return list(rows.order_by("id").values_list("ref", flat=True))


def cancel_booking_messages(booking_id: int, reason: str, *, keep_for: Any = None) -> int:
    """Cancel the booking's messages that have not gone out yet (those of a reminder made
    for the pickup time ``keep_for`` excepted), with ``reason``."""
    waiting = Message.objects.filter(booking_id=booking_id, status=MessageStatus.QUEUED)
    if keep_for is not None:
        waiting = waiting.exclude(expires_at=keep_for)
    count = waiting.update(status=MessageStatus.CANCELLED, error=reason[:2000])
    if count:
        logger.info("booking %s: %s queued message(s) cancelled: %s", booking_id, count, reason)
    return count


# Delivery jobs that ended for good, and what their queued message becomes.
DEAD_DELIVERY_SWEEP_BATCH = 500  # messages per run: a sweep works in batches and stops


def settle_dead_deliveries(limit: int = DEAD_DELIVERY_SWEEP_BATCH) -> dict[str, int]:
    """Messages still ``queued`` whose delivery job is dead (attempts exhausted, a
    permanent error) become ``failed``, and those whose job an operator cancelled become
    ``cancelled``, each with the job's reason. A dead job already replayed is left
    alone: its replay may still send the message. Returns the counts."""
    from notifications.tasks import DELIVERY_TASKS

    names = [task.name for task in DELIVERY_TASKS.values()]
    ended = Job.objects.filter(
        task_name__in=names, status__in=(JobStatus.DEAD, JobStatus.CANCELLED), replays__isnull=True
    )
    stuck = Message.objects.filter(
        status=MessageStatus.QUEUED, job_id__in=ended.values("id")
    ).order_by("id")[:limit]
    counts = {"failed": 0, "cancelled": 0}
    messages = list(stuck)
    jobs = Job.objects.in_bulk([m.job_id for m in messages if m.job_id is not None])
    for message in messages:
        job = jobs.get(message.job_id) if message.job_id else None
        if job is None:
            continue
        cause = f"{job.last_error_class}: {job.last_error_message}".strip(": ")[:1500]
        if job.status == JobStatus.DEAD:
            done = fail(message, f"the delivery job {job.id} failed for good ({cause})")
            logger.warning(
                "message %s: delivery job %s dead, marked failed: %s", message.id, job.id, cause
            )
            counts["failed"] += int(done)
        else:
            reason = f"the delivery job {job.id} was cancelled"
            done = bool(_finish(message.id, MessageStatus.CANCELLED, error=reason))
            logger.info("message %s: %s", message.id, reason)
            counts["cancelled"] += int(done)
    return counts


def resend(message: Message) -> queueing.Job | None:
    """Queue a failed message again (a new delivery job); None when it is not failed any
    more or has no address. Run inside a transaction: the status and the job together."""
    if not message.to:
        return None
    again = Message.objects.filter(id=message.id, status=MessageStatus.FAILED).update(
        status=MessageStatus.QUEUED, error="", held_until=None
    )
    if not again:
        return None
    message.refresh_from_db()
    job = enqueue_delivery(message, run_at=timezone.now())
    Message.objects.filter(id=message.id).update(job_id=job.id)
    return job

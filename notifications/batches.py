"""Batch sends: one call fans out to up to NOTIFICATIONS_BATCH_MAX_RECIPIENTS
recipients in jobs of at most NOTIFICATIONS_BATCH_CHUNK, each recipient's message
exactly once per channel (the message's dedupe key is batch x recipient x channel, a
unique column, so a chunk job that runs again after a crash creates nothing new)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings

import queueing
from notifications import services
from notifications.models import Batch, Message, Preference, Recipient, Suppression

logger = logging.getLogger(__name__)


def start(
    kind: str,
    refs: list[str],
    context: dict[str, Any],
    *,
    channel: str | None = None,
    urgent: bool = False,
    send_at: str | None = None,
    job_id: str | None = None,
) -> Batch:
    """Record the batch and enqueue its chunk jobs (in the caller's transaction)."""
    from notifications.tasks import send_batch_chunk

    refs = list(dict.fromkeys(refs))  # a recipient named twice gets one message
    limit = settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS
    if len(refs) > limit:
        raise services.NotificationError(
            f"{len(refs)} recipients; a batch takes at most {limit} "
            "(NOTIFICATIONS_BATCH_MAX_RECIPIENTS)"
        )
    services._kind(kind)
    batch = Batch.objects.create(
        kind=kind,
        channel=channel or "",
        context=context,
        recipient_count=len(refs),
        job_id=job_id,
    )
    size = settings.NOTIFICATIONS_BATCH_CHUNK
    for number, first in enumerate(range(0, len(refs), size)):
        queueing.enqueue(
            send_batch_chunk,
            kwargs={
                "batch_id": batch.id,
                "refs": refs[first : first + size],
                "urgent": urgent,
                "send_at": send_at,
            },
            queue=settings.NOTIFICATIONS_QUEUE,
            unique_key=f"notifications:batch:{batch.id}:{number}",
        )
    logger.info("batch %s: %s x %s recipients queued", batch.id, kind, len(refs))
    return batch


def start_segment(
    kind: str,
    segment: str,
    context: dict[str, Any],
    *,
    channel: str | None = None,
    urgent: bool = False,
    send_at: str | None = None,
) -> list[Batch]:
    """Send to every recipient of ``segment``, in consecutive batches of at most
    NOTIFICATIONS_BATCH_MAX_RECIPIENTS (in the caller's transaction): a segment of any
    size goes out, and each batch stays within the limit. A segment with nobody in it
    still records one (empty) batch."""
    refs = services.recipients_in_segment(segment)
    limit = settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS
    made = [
        start(
            kind,
            refs[first : first + limit],
            context,
            channel=channel,
            urgent=urgent,
            send_at=send_at,
        )
        for first in range(0, max(len(refs), 1), limit)
    ]
    if len(made) > 1:
        logger.info(
            "segment %s: %s recipients in %s batches of at most %s",
            segment,
            len(refs),
            len(made),
            limit,
        )
    return made


def send_chunk(
    batch_id: int, refs: list[str], *, urgent: bool = False, send_at: str | None = None
) -> dict[str, Any]:
    """Queue the messages of one chunk, with a handful of queries for the whole chunk
    (recipients, preferences, suppressions and existing keys each in one, the messages in
    one bulk insert) and one delivery job per message. Unknown refs are reported, not
    fatal; refs whose messages exist already (a chunk run again) get nothing new."""
    batch = Batch.objects.filter(id=batch_id).first()
    if batch is None:
        return {"skipped": f"no batch {batch_id}"}
    kind = services._kind(batch.kind)
    when = dt.datetime.fromisoformat(send_at) if send_at else None
    recipients = {r.ref: r for r in Recipient.objects.filter(ref__in=refs)}
    problems = {ref: f"unknown recipient {ref!r}" for ref in refs if ref not in recipients}
    templates: dict = {}
    planned = []
    for recipient in recipients.values():
        try:
            full, targets = services.plan(
                kind, recipient, batch.context, batch.channel or None, templates
            )
        except services.NotificationError as exc:
            problems[recipient.ref] = str(exc)
            continue
        for target in targets:
            planned.append(
                (recipient, target, full, target.key(f"batch:{batch.id}:{recipient.ref}"))
            )
    existing = set(
        Message.objects.filter(dedupe_key__in=[key for *_, key in planned]).values_list(
            "dedupe_key", flat=True
        )
    )
    choices = {
        (p.recipient_id, p.kind, p.channel): p.opted_in
        for p in Preference.objects.filter(
            recipient__in=list(recipients.values()), kind__in=(kind.name, "*")
        )
    }
    suppressed = set(
        Suppression.objects.filter(
            address__in={
                Suppression.address_key(target.channel, target.address)
                for _, target, _, _ in planned
            }
        ).values_list("channel", "address")
    )
    messages = []
    for recipient, target, full, key in planned:
        if key in existing:
            continue
        own = choices.get((recipient.id, kind.name, target.channel))
        opted = own if own is not None else choices.get((recipient.id, "*", target.channel), True)
        try:
            message = services.build_message(
                kind,
                recipient,
                target,
                full,
                key,
                opted=opted,
                suppressed=(
                    target.channel,
                    Suppression.address_key(target.channel, target.address),
                )
                in suppressed,
                urgent=urgent,
                send_at=when,
                batch_id=batch.id,
            )
        except services.NotificationError as exc:  # a template that does not render
            problems[recipient.ref] = str(exc)
            continue
        messages.append(message)
    # A concurrent run of the same chunk makes this fail on the unique key: the job
    # retries and the next run finds the messages.
    Message.objects.bulk_create(messages)
    services.enqueue_deliveries(messages)
    if problems:
        logger.warning("batch %s: %s recipient(s) skipped: %s", batch_id, len(problems), problems)
    return {
        "batch": batch_id,
        "messages": len(messages),
        "existing": len(existing),
        "skipped": problems,
    }

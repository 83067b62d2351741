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
from notifications.models import Batch

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


def send_chunk(
    batch_id: int, refs: list[str], *, urgent: bool = False, send_at: str | None = None
) -> dict[str, Any]:
    """Queue the messages of one chunk; unknown refs are reported, not fatal."""
    batch = Batch.objects.filter(id=batch_id).first()
    if batch is None:
        return {"skipped": f"no batch {batch_id}"}
    when = dt.datetime.fromisoformat(send_at) if send_at else None
    queued, problems = 0, {}
    for ref in refs:
        try:
            messages = services.send(
                batch.kind,
                ref,
                batch.context,
                channel=batch.channel or None,
                urgent=urgent,
                send_at=when,
                dedupe_key=f"batch:{batch.id}:{ref}",
                batch_id=batch.id,
            )
        except services.NotificationError as exc:
            problems[ref] = str(exc)
            continue
        queued += len(messages)
    if problems:
        logger.warning("batch %s: %s recipient(s) skipped: %s", batch_id, len(problems), problems)
    return {"batch": batch_id, "messages": queued, "skipped": problems}

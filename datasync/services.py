"""Receiving and processing inbound webhooks (docs/webhooks.md).

``receive`` runs in the web request: verify, de-duplicate, store the event and enqueue
its processing in one transaction, so an event acknowledged with 202 is never lost (the
job is in the ledger with it). ``process`` runs in the job: find the app's handler and
call it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

import queueing
from datasync.inbound import handler_for
from datasync.models import WebhookEvent, WebhookStatus
from datasync.signatures import VERIFIERS, WebhookRejected, kept_headers

logger = logging.getLogger(__name__)

DEDUPE_KEY = "taskyard:webhook:seen:{source}:{digest}"
# A delivery claims its payload hash for this long while it is being stored; only once
# stored does the claim last WEBHOOK_DEDUPE_SECONDS. A web process that dies mid-way
# leaves a short claim, so the provider's retry is not mistaken for a duplicate.
CLAIM_SECONDS = 30


class UnknownSource(WebhookRejected):
    status = 404
    code = "not_found"


@dataclass(frozen=True)
class Receipt:
    event: WebhookEvent | None  # None: a duplicate
    duplicate: bool


def source_config(source: str) -> dict[str, Any]:
    config = settings.WEBHOOK_SOURCES.get(source)
    if not config or not config.get("secret") or config.get("scheme") not in VERIFIERS:
        raise UnknownSource(f"no webhook source {source!r}")
    return config


_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One client (a thread-safe connection pool) per process and Redis URL; a down Redis
    answers within a second."""
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return _clients[url]


def receive(source: str, request: HttpRequest, body: bytes) -> Receipt:
    """Verify and store one delivery; raise WebhookRejected (with its HTTP status)."""
    config = source_config(source)
    verified = VERIFIERS[config["scheme"]](config["secret"], request, body)
    digest = hashlib.sha256(body).hexdigest()
    claim = DEDUPE_KEY.format(source=source, digest=digest)
    client: redis.Redis | None = _redis()
    try:
        first = _redis().set(claim, "1", nx=True, ex=CLAIM_SECONDS)
    except redis.RedisError as exc:
        # Without Redis the payload-hash window is checked in the database (racy between
        # two concurrent identical deliveries, which the event id still catches).
        logger.warning("webhook %s: dedupe without Redis: %r", source, exc)
        client, first = None, not _seen_recently(source, digest)
    if not first:
        logger.info(
            "webhook %s %s: same payload within the window, dropped", source, verified.event_id
        )
        return Receipt(None, duplicate=True)
    try:
        event = _store(source, request, verified, digest)
    except BaseException:
        if client is not None:
            client.delete(claim)  # the provider's retry must not look like a duplicate
        raise
    if client is not None and event is not None:
        # On failure the event id still catches the provider's retries.
        with contextlib.suppress(redis.RedisError):
            client.expire(claim, settings.WEBHOOK_DEDUPE_SECONDS)
    return Receipt(event, duplicate=event is None)


def _seen_recently(source: str, digest: str) -> bool:
    since = timezone.now() - timedelta(seconds=settings.WEBHOOK_DEDUPE_SECONDS)
    return WebhookEvent.objects.filter(
        source=source, payload_hash=digest, received_at__gte=since
    ).exists()


def _store(source: str, request: HttpRequest, verified: Any, digest: str) -> WebhookEvent | None:
    """The event and its processing job in one transaction; None when the provider's
    event id was stored before (a retry of a delivered event)."""
    from datasync.tasks import process_webhook

    job_id = uuid.uuid4()  # known before the insert: no UPDATE to link event and job
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                source=source,
                event_id=verified.event_id[:255],
                event_type=verified.event_type[:255],
                payload=verified.payload,
                headers=kept_headers(request),
                payload_hash=digest,
                job_id=job_id,
            )
            queueing.enqueue(process_webhook, [event.id], job_id=job_id)
    except IntegrityError:
        logger.info("webhook %s %s: event id seen before, dropped", source, verified.event_id)
        return None
    return event


def process(event_id: int) -> dict[str, Any]:
    """Run the app's handler for one stored event; raise what the handler raises (the job
    retries), after noting the failure on the event."""
    event = WebhookEvent.objects.filter(id=event_id).first()
    if event is None:
        return {"skipped": f"no webhook event {event_id}"}
    handler = handler_for(event.source, event.event_type)
    mine = WebhookEvent.objects.filter(id=event.id)
    # One UPDATE per outcome: the processing job's cost is mostly round trips.
    if handler is None:
        mine.update(
            status=WebhookStatus.UNHANDLED, processed_at=timezone.now(), attempts=F("attempts") + 1
        )
        return {"event": event.id, "status": WebhookStatus.UNHANDLED}
    event.attempts += 1
    try:
        result = handler(event)
    except Exception as exc:
        mine.update(
            status=WebhookStatus.FAILED, last_error=repr(exc)[:2000], attempts=F("attempts") + 1
        )
        logger.warning(
            "webhook event %s (%s %s): handler failed: %r",
            event.id,
            event.source,
            event.event_type,
            exc,
        )
        raise
    mine.update(
        status=WebhookStatus.PROCESSED,
        processed_at=timezone.now(),
        last_error="",
        attempts=F("attempts") + 1,
    )
    return {"event": event.id, "status": WebhookStatus.PROCESSED, "result": result}


def replay(event: WebhookEvent) -> Any:
    """Process a stored event again (admin action): a new job, the event back to
    received."""
    from datasync.tasks import process_webhook

    with transaction.atomic():
        job = queueing.enqueue(process_webhook, [event.id])
        WebhookEvent.objects.filter(id=event.id).update(
            status=WebhookStatus.RECEIVED, job_id=job.id, processed_at=None
        )
    return job

"""Outbound webhooks to customers' endpoints: a JSON POST signed with the endpoint's
secret (``X-Taskyard-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``, the same
scheme our own inbound webhooks verify), one circuit breaker per endpoint through the
provider guard, and the endpoint disabled after a streak of failures, with an alert."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, cast

import httpx
from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db.models import F
from django.utils import timezone

from notifications.channels.base import SendResult, Undeliverable
from queueing import RateLimited, provider_call

if TYPE_CHECKING:
    from notifications.models import Message, Recipient, WebhookEndpoint

logger = logging.getLogger(__name__)
USER_AGENT = "Taskyard-Webhooks/1"
# Answers that refuse the message itself (bad request, auth, gone...): no retry. 408 and
# 429 ask to come back later; 5xx and network errors are retried by the job's policy.
REFUSED = frozenset(range(400, 500)) - {408, 429}


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers of ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Taskyard-Timestamp": stamp, "X-Taskyard-Signature": f"sha256={mac}"}


def health_check(spec: Any) -> None:
    """Customers' endpoints are not probed: a failed delivery is the health signal."""


# register_provider's read-modify-write of the setting, one thread at a time (the
# notifications worker runs threads: two endpoints registered at once would each write a
# dict without the other's entry).
_registering = threading.Lock()


def register_provider(endpoint: WebhookEndpoint) -> str:
    """Declare the endpoint to the provider guard (one breaker per endpoint, state in
    Redis, shared by every worker). The guard only knows providers of
    TASKYARD_PROVIDERS, so this process's setting gains an entry built from
    NOTIFICATIONS_WEBHOOK_PROVIDER; the guard parses it again when the dict changes.
    Thread-safe: the setting is replaced under a lock, never mutated in place."""
    name = endpoint.provider_name
    if name in settings.TASKYARD_PROVIDERS:
        return name
    with _registering:
        if name not in settings.TASKYARD_PROVIDERS:
            spec = {
                **settings.NOTIFICATIONS_WEBHOOK_PROVIDER,
                "base_url": endpoint.url,
                "health_check": "notifications.channels.webhook.health_check",
            }
            settings.TASKYARD_PROVIDERS = {**settings.TASKYARD_PROVIDERS, name: spec}
    return name


class WebhookChannel:
    name: ClassVar[str] = "webhook"
    rate_limit: ClassVar[str] = "notifications.webhook"

    def address(self, recipient: Recipient) -> str:
        first = recipient.webhook_endpoints.filter(active=True).first()
        return first.url if first else ""

    def send(self, message: Message) -> SendResult:
        from notifications.models import WebhookEndpoint

        endpoint_id = message.webhook_endpoint_id
        endpoint = WebhookEndpoint.objects.filter(id=endpoint_id).first() if endpoint_id else None
        if endpoint is None or not endpoint.active:
            raise Undeliverable("the webhook endpoint is disabled or gone")
        body = json.dumps(
            {
                "id": f"msg_{message.id}",
                "type": message.kind,
                "created": int(message.created_at.timestamp()),
                "recipient": message.context.get("recipient_ref", ""),
                "data": {k: v for k, v in message.context.items() if k != "unsubscribe_url"},
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Taskyard-Event-Id": f"msg_{message.id}",
            **sign(endpoint.secret, body),
        }
        timeout = cast(float, settings.NOTIFICATIONS_WEBHOOK_PROVIDER.get("timeout", 10))
        with provider_call(register_provider(endpoint)):
            response = httpx.post(endpoint.url, content=body, headers=headers, timeout=timeout)
            if response.status_code == 429:
                retry_after = response.headers.get("Retry-After")
                raise RateLimited(float(retry_after) if retry_after else None)
            if response.status_code in REFUSED:
                # The endpoint refused this message: another attempt gets the same answer.
                raise Undeliverable(f"the endpoint answered {response.status_code}")
            response.raise_for_status()
        WebhookEndpoint.objects.filter(id=endpoint.id).update(failure_streak=0)
        return SendResult(provider_message_id=f"msg_{message.id}", delivered=True)


def record_failure(endpoint_id: int, error: str) -> None:
    """Count one message that failed for good (services.fail calls this once per
    message, at its final failure: not at every attempt); at
    NOTIFICATIONS_WEBHOOK_FAILURE_STREAK in a row the endpoint is disabled (once: a
    conditional UPDATE) and operators are alerted."""
    from notifications.models import WebhookEndpoint

    mine = WebhookEndpoint.objects.filter(id=endpoint_id, active=True)
    if not mine.update(failure_streak=F("failure_streak") + 1):
        return  # disabled already (or gone): its streak is over
    limit = settings.NOTIFICATIONS_WEBHOOK_FAILURE_STREAK
    reason = f"{limit} failed deliveries in a row; last: {error}"[:300]
    disabled = mine.filter(failure_streak__gte=limit).update(
        active=False, disabled_at=timezone.now(), disabled_reason=reason
    )
    endpoint = WebhookEndpoint.objects.filter(id=endpoint_id).first()
    if disabled and endpoint is not None:
        alert_disabled(endpoint, reason)


def alert_disabled(endpoint: WebhookEndpoint, reason: str) -> None:
    subject = f"Taskyard: webhook endpoint {endpoint.id} disabled"
    text = f"{endpoint.url} (recipient {endpoint.recipient_id}) was disabled: {reason}"
    logger.error("alert webhook_endpoint_disabled: %s", text)
    try:
        if settings.ALERT_EMAILS:
            send_mail(subject, text, None, settings.ALERT_EMAILS, fail_silently=False)
        else:
            mail_admins(subject, text, fail_silently=True)
    except Exception as error:
        logger.warning("alert for endpoint %s not mailed: %r", endpoint.id, error)

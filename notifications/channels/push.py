"""Web Push through pywebpush: a VAPID-signed, aes128gcm-encrypted POST to each of the
recipient's browser subscriptions (keys from ``manage.py generate_vapid_keys``).

The push service answers at once (201): that is the delivery status there is, since the
Web Push protocol has no receipts. 404/410 mean the browser dropped the subscription: it
is deactivated."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from notifications.channels.base import SendResult, Undeliverable
from queueing import PermanentError, RateLimited, provider_call

if TYPE_CHECKING:
    from notifications.models import Message, Recipient

PROVIDER = "webpush"
# How long a push service keeps a message for an offline browser (seconds): a day, as
# reminders are at most a day ahead.
PUSH_TTL_SECONDS = 24 * 3600
GONE = (404, 410)


def vapid_private_key() -> str:
    """VAPID_PRIVATE_KEY, or the development key file ``manage.py generate_vapid_keys``
    wrote under VAR_DIR; PermanentError naming the fix when there is neither."""
    if settings.VAPID_PRIVATE_KEY:
        return settings.VAPID_PRIVATE_KEY
    path = Path(settings.VAPID_KEY_FILE)
    if path.exists():
        return path.read_text().strip()
    raise PermanentError(
        "no VAPID key: set VAPID_PRIVATE_KEY, or run `manage.py generate_vapid_keys`"
    )


def vapid_public_key() -> str:
    """VAPID_PUBLIC_KEY, else the public half of the private key (so it always matches
    the key pushes are signed with); PermanentError when there is no key."""
    if settings.VAPID_PUBLIC_KEY:
        return settings.VAPID_PUBLIC_KEY
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = vapid_private_key()
    number = int.from_bytes(base64.urlsafe_b64decode(private + "=" * (-len(private) % 4)), "big")
    point = (
        ec.derive_private_key(number, ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode("ascii")


def health_check(spec: Any) -> None:
    """Push services differ per browser vendor: there is no one URL to check."""


class PushChannel:
    name: ClassVar[str] = "push"
    rate_limit: ClassVar[str] = "notifications.push"

    def address(self, recipient: Recipient) -> str:
        first = recipient.push_subscriptions.filter(active=True).first()
        return first.endpoint if first else ""

    def send(self, message: Message) -> SendResult:
        from pywebpush import WebPushException, webpush

        from notifications.models import PushSubscription

        subscriptions = list(
            PushSubscription.objects.filter(recipient_id=message.recipient_id, active=True)
        )
        if not subscriptions:
            raise Undeliverable("the recipient has no active push subscription")
        data = json.dumps(
            {
                "title": message.subject,
                "body": message.body,
                "kind": message.kind,
                "message_id": message.id,
            }
        )
        key = vapid_private_key()
        accepted = []
        timeout = settings.TASKYARD_PROVIDERS[PROVIDER].get("timeout", 10)
        for subscription in subscriptions:
            try:
                with provider_call(PROVIDER):
                    try:
                        response = webpush(
                            subscription.info(),
                            data=data,
                            vapid_private_key=key,
                            vapid_claims={"sub": settings.VAPID_SUBJECT},
                            timeout=timeout,
                            ttl=PUSH_TTL_SECONDS,
                        )
                    except WebPushException as exc:
                        if exc.status_code == 429:
                            raise RateLimited(exc.retry_after) from exc
                        raise
            except WebPushException as exc:
                if exc.status_code in GONE:
                    PushSubscription.objects.filter(id=subscription.id).update(active=False)
                    continue
                raise
            accepted.append(response.headers.get("Location", subscription.endpoint))
        if not accepted:
            raise Undeliverable("every push subscription of the recipient has expired")
        return SendResult(provider_message_id=accepted[0][-100:], delivered=True)

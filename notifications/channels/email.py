"""Email through Django's mail API.

Production: django-anymail's SendGrid backend (the seed design's provider; the local
SendGrid fake in development). django-anymail 15 has dropped *official* support for
SendGrid: it warns ``AnymailNotSupportedWarning`` when the backend is built and adds the
system check ``anymail.W003`` when ``EMAIL_BACKEND`` names it. We keep SendGrid (the
backend and the signed event webhook work, as the tests show against the fake), build the
connection here instead of through ``EMAIL_BACKEND`` (which stays the alerts' SMTP or
console backend, so W003 does not fire) and silence that one warning where the
connection is built. ``NOTIFICATIONS_EMAIL_BACKEND=smtp`` sends through Django's SMTP
backend (``EMAIL_HOST``...) instead: no provider message id, no delivery events.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.channels.base import SendResult
from queueing import provider_call

if TYPE_CHECKING:
    from django.core.mail.backends.base import BaseEmailBackend

    from notifications.models import Message, Recipient

PROVIDER = "sendgrid"


def connection() -> BaseEmailBackend:
    """A mail connection for notifications (NOTIFICATIONS_EMAIL_BACKEND)."""
    backend = settings.NOTIFICATIONS_EMAIL_BACKEND
    if backend == "sendgrid":
        from anymail.exceptions import AnymailNotSupportedWarning

        spec = settings.TASKYARD_PROVIDERS[PROVIDER]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnymailNotSupportedWarning)
            return get_connection(
                "anymail.backends.sendgrid.EmailBackend",
                api_key=settings.SENDGRID_API_KEY,
                api_url=spec["base_url"].rstrip("/") + "/v3/",
                timeout=spec.get("timeout", 15),
            )
    if backend == "smtp":
        return get_connection("django.core.mail.backends.smtp.EmailBackend")
    return get_connection("django.core.mail.backends.console.EmailBackend")


class EmailChannel:
    name: ClassVar[str] = "email"
    rate_limit: ClassVar[str] = "notifications.email"

    def address(self, recipient: Recipient) -> str:
        return recipient.email

    def send(self, message: Message) -> SendResult:
        unsubscribe = message.context.get("unsubscribe_url", "")
        headers = {}
        if unsubscribe:
            # RFC 8058 one-click unsubscribe: mail clients POST to the link.
            headers = {
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=settings.NOTIFICATIONS_FROM_EMAIL,
            to=[message.to],
            headers=headers,
            connection=connection(),
        )
        is_anymail = settings.NOTIFICATIONS_EMAIL_BACKEND == "sendgrid"
        if is_anymail:
            # Comes back in every SendGrid event (custom_args): the delivery log's row.
            email.metadata = {"taskyard_message_id": str(message.id)}  # type: ignore[attr-defined]
            email.tags = [message.kind]  # type: ignore[attr-defined]
        with provider_call(PROVIDER):
            email.send()
        message_id = ""
        if is_anymail:
            status = email.anymail_status  # type: ignore[attr-defined]
            message_id = status.message_id or ""
        spec = settings.TASKYARD_PROVIDERS[PROVIDER]
        cost = spec.get("cost_per_call")
        return SendResult(
            provider_message_id=str(message_id),
            cost=Decimal(str(cost)) if cost and is_anymail else None,
            cost_unit=spec.get("cost_unit", "USD") if cost and is_anymail else "",
        )

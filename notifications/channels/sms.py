"""SMS through the Twilio SDK, with status callbacks to our inbound webhooks."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from notifications.channels.base import SendResult, Undeliverable
from queueing import RateLimited, provider_call

if TYPE_CHECKING:
    from twilio.rest import Client

    from notifications.models import Message, Recipient

PROVIDER = "twilio"
# Twilio error codes (answers to the send) that say the number will never take an SMS:
# invalid number, unreachable, the recipient replied STOP, not reachable by SMS, not a
# mobile. No retry, and the number is suppressed. (30005/30006, unknown or landline
# destination, come later in status callbacks: tracking.TWILIO_SUPPRESSING_CODES.)
SUPPRESSING_CODES = {21211, 21214, 21610, 21612, 21614}
# Refused for good, but not the number's fault (21408: our account may not send to that
# region): no retry, the number is not suppressed.
UNDELIVERABLE_CODES = SUPPRESSING_CODES | {21408}
GSM_SEGMENT = 160  # characters per SMS segment (GSM-7); Twilio bills per segment


_local = threading.local()


def client() -> Client:
    """One Twilio client per thread (the notifications pool is threads, and the 429's
    Retry-After is read from the client's last response); in development it talks to
    the local fake. Built again when the provider's base URL changes."""
    base_url = settings.TASKYARD_PROVIDERS[PROVIDER]["base_url"]
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != base_url:
        cached = _local.client = (base_url, _build_client(base_url))
    return cached[1]


def _build_client(base_url: str) -> Client:
    from twilio.rest import Client

    spec = settings.TASKYARD_PROVIDERS[PROVIDER]
    http_client: Any = None
    if "twilio.com" not in base_url:
        from devstack.fakes.twilio import redirecting_http_client

        http_client = redirecting_http_client(base_url, timeout=spec.get("timeout", 15))
    else:
        from twilio.http.http_client import TwilioHttpClient

        http_client = TwilioHttpClient(timeout=spec.get("timeout", 15))
    return Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http_client)


def status_callback_url() -> str:
    return settings.NOTIFICATIONS_PUBLIC_URL.rstrip("/") + "/webhooks/twilio/"


def segments(body: str) -> int:
    return max(1, -(-len(body) // GSM_SEGMENT))


class SmsChannel:
    name: ClassVar[str] = "sms"
    rate_limit: ClassVar[str] = "notifications.sms"

    def address(self, recipient: Recipient) -> str:
        return recipient.phone

    def send(self, message: Message) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        units = segments(message.body)
        twilio = client()
        params = {"to": message.to, "from_": settings.TWILIO_FROM_NUMBER, "body": message.body}
        if settings.NOTIFICATIONS_PUBLIC_URL:
            params["status_callback"] = status_callback_url()
        try:
            with provider_call(PROVIDER, units=units):
                try:
                    sent = twilio.messages.create(**params)
                except TwilioRestException as exc:
                    if exc.status == 429:
                        raise RateLimited(_retry_after(twilio)) from exc
                    raise
        except TwilioRestException as exc:
            if exc.code in UNDELIVERABLE_CODES:
                raise Undeliverable(
                    f"Twilio {exc.code}: {exc.msg}",
                    suppress_address=exc.code in SUPPRESSING_CODES,
                ) from exc
            raise
        spec = settings.TASKYARD_PROVIDERS[PROVIDER]
        per = spec.get("cost_per_call")
        return SendResult(
            provider_message_id=sent.sid or "",
            cost=Decimal(str(per)) * units if per else None,
            cost_unit=spec.get("cost_unit", "USD") if per else "",
        )


def _retry_after(twilio: Client) -> float | None:
    """Twilio's Retry-After, from the last response (its exception carries no headers)."""
    http = twilio.http_client
    response = getattr(http, "last_response", None) or getattr(
        http, "_test_only_last_response", None
    )
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None

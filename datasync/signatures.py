"""Verifying who sent a webhook, per the scheme each provider signs with.

    stripe    Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body" with whsec_...>
              (stripe-python's WebhookSignature does the comparison)
    twilio    X-Twilio-Signature: base64 HMAC-SHA1 of the URL and the sorted form
              parameters with the auth token (twilio-python's RequestValidator)
    sendgrid  X-Twilio-Email-Event-Webhook-Signature / -Timestamp: ECDSA P-256 SHA-256
              over timestamp + body, verified with the account's public key
    hmac      X-Taskyard-Timestamp and X-Taskyard-Signature: sha256=<hex HMAC-SHA256 of
              "timestamp.body">, for any other source

A bad or missing signature is BadSignature (401, nothing stored); a signed timestamp
further than WEBHOOK_TOLERANCE_SECONDS from now is StaleTimestamp (400: a replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest


class WebhookRejected(Exception):
    status = 400
    code = "invalid"


class BadSignature(WebhookRejected):
    status = 401
    code = "bad_signature"


class StaleTimestamp(WebhookRejected):
    status = 400
    code = "stale_timestamp"


class MalformedPayload(WebhookRejected):
    status = 400
    code = "malformed_payload"


@dataclass(frozen=True)
class Verified:
    event_id: str
    event_type: str
    payload: Any


# Headers kept with the event: who sent it and how it was signed.
KEPT_HEADERS = (
    "Content-Type",
    "User-Agent",
    "Stripe-Signature",
    "X-Twilio-Signature",
    "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp",
    "X-Taskyard-Signature",
    "X-Taskyard-Timestamp",
    "X-Taskyard-Event-Id",
)


def kept_headers(request: HttpRequest) -> dict[str, str]:
    return {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}


def _check_timestamp(raw: str | None) -> int:
    try:
        stamp = int(raw or "")
    except ValueError:
        raise BadSignature("the signature has no valid timestamp") from None
    if abs(time.time() - stamp) > settings.WEBHOOK_TOLERANCE_SECONDS:
        raise StaleTimestamp(
            f"signed {int(time.time() - stamp)}s ago; older than "
            f"{settings.WEBHOOK_TOLERANCE_SECONDS}s is refused as a replay"
        )
    return stamp


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"the body is not JSON: {exc}") from None


def verify_stripe(secret: str, request: HttpRequest, body: bytes) -> Verified:
    import stripe

    header = request.headers.get("Stripe-Signature", "")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    _check_timestamp(parts.get("t"))
    try:
        # Tolerance already checked above, so a stale event is a 400, not a 401.
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, tolerance=None)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise BadSignature(f"Stripe-Signature does not match: {exc}") from None
    event = _json(body)
    if not isinstance(event, dict):
        raise MalformedPayload("a Stripe event is a JSON object")
    return Verified(str(event.get("id", "")), str(event.get("type", "")), event)


def verify_twilio(secret: str, request: HttpRequest, body: bytes) -> Verified:
    from twilio.request_validator import RequestValidator

    params = {key: request.POST.get(key, "") for key in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    url = request.build_absolute_uri()
    if not signature or not RequestValidator(secret).validate(url, params, signature):
        raise BadSignature("X-Twilio-Signature does not match this URL and parameters")
    sid = params.get("MessageSid") or params.get("SmsSid") or params.get("CallSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or params.get("CallStatus")
    event_id = f"{sid}:{status}" if sid and status else sid
    return Verified(event_id, f"message.{status}" if status else "message", params)


def verify_sendgrid(secret: str, request: HttpRequest, body: bytes) -> Verified:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    stamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
    _check_timestamp(stamp)
    try:
        key = load_der_public_key(base64.b64decode(secret))
        signature = base64.b64decode(
            request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
        )
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise BadSignature("SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC key")
        key.verify(signature, (stamp or "").encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature(f"the event webhook signature does not match: {exc!r}") from None
    events = _json(body)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MalformedPayload("SendGrid posts a JSON array of events")
    ids = sorted(str(e.get("sg_event_id", "")) for e in events)
    event_id = hashlib.sha256("|".join(ids).encode()).hexdigest() if all(ids) and ids else ""
    types = {str(e.get("event", "")) for e in events}
    return Verified(event_id, types.pop() if len(types) == 1 else "batch", events)


def verify_hmac(secret: str, request: HttpRequest, body: bytes) -> Verified:
    stamp = request.headers.get("X-Taskyard-Timestamp")
    _check_timestamp(stamp)
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    given = request.headers.get("X-Taskyard-Signature", "").removeprefix("sha256=")
    if not hmac.compare_digest(expected, given):
        raise BadSignature("X-Taskyard-Signature does not match")
    payload = _json(body)
    event_id = request.headers.get("X-Taskyard-Event-Id", "")
    event_type = ""
    if isinstance(payload, dict):
        event_id = event_id or str(payload.get("id", ""))
        event_type = str(payload.get("type", ""))
    return Verified(event_id, event_type, payload)


def sign_hmac(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender of the generic scheme adds (for our own senders and tests)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Taskyard-Timestamp": stamp, "X-Taskyard-Signature": f"sha256={mac}"}


VERIFIERS = {
    "stripe": verify_stripe,
    "twilio": verify_twilio,
    "sendgrid": verify_sendgrid,
    "hmac": verify_hmac,
}

"""Fake SendGrid: the v3 Mail Send endpoint and the signed Event Webhook.

Follows the Mail Send reference
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send) and the Event
Webhook with signature verification
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):

- ``POST /v3/mail/send`` with ``Authorization: Bearer <key>``: 202, empty body, an
  ``X-Message-Id`` header. A payload without personalizations, from, subject or content
  (and no template_id) is a 400 ``{"errors": [{"message", "field", "help"}]}`` as
  SendGrid answers; a missing key a 401.
- Events: each accepted message makes ``processed`` then ``delivered`` events (``bounce``
  for addresses in ``bounces``) per recipient, carrying the personalization's
  ``custom_args`` (where django-anymail puts its ``anymail_id``), kept in ``fake.events``.
  With ``event_webhook_url`` set they are POSTed there as one JSON array, signed like
  SendGrid: ECDSA P-256 / SHA-256 over ``timestamp + body``, base64 DER signature in
  ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``. ``fake.verification_key`` is the public key
  as SendGrid shows it (base64 DER), i.e. django-anymail's
  ``SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY``.

The signing key is derived from a fixed development seed, so a separate
``python -m devstack.fakes`` process and the app agree on it across restarts
(:data:`DEV_VERIFICATION_KEY`); tests may pass their own ``private_key``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import string
import time
from collections.abc import Iterator, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.fakes.base import (
    DEFAULT_HANG_SECONDS,
    FakeProvider,
    Handler,
    Request,
    Response,
    random_id,
)
from devstack.fakes.webhooks import Delivery, deliver_in_background, post

DEFAULT_PORT = 12113
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
_MESSAGE_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
# Development only: a P-256 private value derived from a public seed.
_DEV_SEED = b"taskyard development SendGrid event webhook key"


def dev_private_key() -> ec.EllipticCurvePrivateKey:
    """The fixed development signing key (never use it for anything real)."""
    value = int.from_bytes(hashlib.sha256(_DEV_SEED).digest(), "big")
    return ec.derive_private_key(value, ec.SECP256R1())


def verification_key(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as SendGrid displays it: base64 of the DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


DEV_VERIFICATION_KEY = verification_key(dev_private_key())


def signature_headers(
    payload: bytes, private_key: ec.EllipticCurvePrivateKey, timestamp: int | None = None
) -> dict[str, str]:
    """The two signature headers of an event webhook POST carrying ``payload``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = private_key.sign(stamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        TIMESTAMP_HEADER: stamp,
    }


def send_events(
    url: str,
    events: list[dict[str, Any]],
    private_key: ec.EllipticCurvePrivateKey | None = None,
    timeout: float = 10.0,
) -> Delivery:
    """POST ``events`` to ``url`` as SendGrid's signed event webhook does."""
    body = json.dumps(events).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        **signature_headers(body, private_key or dev_private_key()),
    }
    return post(url, body, headers, timeout=timeout)


def _error(status: int, message: str, field: str | None = None) -> Response:
    return Response.json(
        status,
        {
            "errors": [
                {"message": message, "field": field, "help": _HELP + field if field else None}
            ]
        },
    )


class SendGridFake(FakeProvider):
    name = "sendgrid"
    default_port = DEFAULT_PORT

    def __init__(
        self,
        *,
        event_webhook_url: str | None = None,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        bounces: Sequence[str] = (),
        hang_seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.event_webhook_url = event_webhook_url
        self.private_key = private_key or dev_private_key()
        self.bounces = set(bounces)
        self.reset_data()

    @property
    def verification_key(self) -> str:
        return verification_key(self.private_key)

    def reset_data(self) -> None:
        self.messages: list[dict[str, Any]] = []  # {"message_id", "payload"}
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("POST", r"/v3/mail/send", "mail.send", self._send)]

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        response = _error(status, message)
        response.headers.update(headers or {})
        return response

    def _send(self, request: Request) -> Response:
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _error(401, "The provided authorization grant is invalid, expired, or revoked")
        try:
            payload = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "Bad Request", None)
        if not isinstance(payload, dict):
            return _error(400, "Bad Request", None)
        problem = _validate(payload)
        if problem:
            return _error(400, *problem)
        message_id = random_id("", 22, _MESSAGE_ID_ALPHABET)
        events = self._events_for(message_id, payload)
        with self.lock:
            self.messages.append({"message_id": message_id, "payload": payload})
            self.events.extend(events)
        if self.event_webhook_url:
            url, key = self.event_webhook_url, self.private_key
            deliver_in_background(
                self, lambda: send_events(url, events, key), f"sendgrid-events-{message_id}"
            )
        return Response(202, b"", {"X-Message-Id": message_id})

    def _events_for(self, message_id: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        events = []
        now = int(time.time())
        categories = payload.get("categories")
        for number, personalization in enumerate(payload["personalizations"]):
            custom_args = {
                **(payload.get("custom_args") or {}),
                **(personalization.get("custom_args") or {}),
            }
            recipients = [
                entry["email"]
                for kind in ("to", "cc", "bcc")
                for entry in personalization.get(kind) or []
            ]
            for email in recipients:
                common = {
                    "email": email,
                    "timestamp": now,
                    "smtp-id": f"<{message_id}@ismtpd-fake>",
                    "sg_message_id": f"{message_id}.filterdrecv-fake-{number}",
                    **({"category": categories} if categories else {}),
                    **custom_args,
                }
                events.append({**common, "event": "processed", "sg_event_id": random_id("")})
                if email in self.bounces:
                    final = {
                        "event": "bounce",
                        "type": "bounce",
                        "status": "5.1.1",
                        "reason": "550 5.1.1 The email account that you tried to reach "
                        "does not exist.",
                    }
                else:
                    final = {"event": "delivered", "response": "250 OK", "tls": 1}
                events.append({**common, **final, "sg_event_id": random_id("")})
        return events


def _validate(payload: dict[str, Any]) -> tuple[str, str] | None:
    """SendGrid's complaint about ``payload``, as (message, field), or None."""
    personalizations = payload.get("personalizations")
    if not personalizations or not isinstance(personalizations, list):
        return (
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if not all(p.get("to") for p in personalizations if isinstance(p, dict)):
        return (
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address.",
            "personalizations.0.to",
        )
    if not (payload.get("from") or {}).get("email"):
        return (
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    templated = bool(payload.get("template_id"))
    if not templated and not (
        payload.get("subject") or all(p.get("subject") for p in personalizations)
    ):
        return (
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject "
            "defined.",
            "subject",
        )
    if not templated and not payload.get("content"):
        return (
            "Unless a valid template_id is provided, the content parameter is required. "
            "There must be at least one defined content block.",
            "content",
        )
    return None


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[SendGridFake]:
    """A running :class:`SendGridFake` (on any free port by default) for the ``with`` block."""
    with SendGridFake(**options).start(port) as fake:
        yield fake

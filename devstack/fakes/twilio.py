"""Fake Twilio Programmable Messaging: send an SMS, read it back, get its status callbacks.

Follows the Message resource of the REST API
(https://www.twilio.com/docs/messaging/api/message-resource) and the outbound status
callbacks (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded ``To``,
  ``From`` or ``MessagingServiceSid``, ``Body`` or ``MediaUrl``, ``StatusCallback``):
  201 and a message resource (``sid`` ``SM...``, ``status`` ``queued``, or ``accepted``
  through a messaging service). Errors as Twilio's ``{"code", "message", "more_info",
  "status"}``: 21604/21603/21602 for a missing To/From/Body, 21211 for the magic
  invalid number ``+15005550001``.
- ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json``
- HTTP Basic auth (account SID or ``SK`` API key, and a secret); with ``auth_token`` set
  only that token is accepted, otherwise any.
- Status callbacks: with ``StatusCallback`` the fake POSTs ``sent`` then ``delivered``
  (``undelivered`` with ErrorCode 30003 for numbers in ``undeliverable``), form-encoded,
  signed in ``X-Twilio-Signature`` (https://www.twilio.com/docs/usage/webhooks/webhooks-security:
  base64 HMAC-SHA1 of the URL followed by each parameter name and value, sorted by
  name, keyed with the account's auth token), which
  ``twilio.request_validator.RequestValidator`` accepts.

The twilio SDK has no base-URL setting; :func:`redirecting_http_client` returns a
``TwilioHttpClient`` that sends every ``https://*.twilio.com`` request here instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from devstack.fakes.base import (
    DEFAULT_HANG_SECONDS,
    FakeProvider,
    Handler,
    Request,
    Response,
    random_id,
)
from devstack.fakes.webhooks import Delivery, post, post_in_background, record_delivery

if TYPE_CHECKING:
    from twilio.http.http_client import TwilioHttpClient

DEFAULT_PORT = 12112
API_VERSION = "2010-04-01"
INVALID_NUMBER = "+15005550001"  # Twilio's magic test number for "invalid To"
_HEX = "0123456789abcdef"
_ERROR_CODES = {401: 20003, 404: 20404, 405: 20004, 429: 20429, 500: 20500, 503: 20503}


def compute_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The ``X-Twilio-Signature`` of a form POST to ``url`` with ``params``."""
    signed = url
    for name in sorted(params):
        values = params[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            signed += name + value
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def send_status_callback(
    url: str, params: Mapping[str, str], auth_token: str, timeout: float = 10.0
) -> Delivery:
    """POST a status callback to ``url`` signed like Twilio."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "User-Agent": "TwilioProxy/1.1",
        "X-Twilio-Signature": compute_signature(auth_token, url, params),
    }
    return post(url, urlencode(params).encode("utf-8"), headers, timeout=timeout)


def redirecting_http_client(base_url: str, **kwargs: Any) -> TwilioHttpClient:
    """A ``TwilioHttpClient`` (keyword arguments as its own: ``timeout``, ...) that sends
    requests for any ``https://*.twilio.com`` host to ``base_url`` instead, and keeps
    the last response (``.last_response.headers``)."""
    from twilio.http.http_client import TwilioHttpClient

    target = urlsplit(base_url)

    class RedirectingHttpClient(TwilioHttpClient):
        # TwilioRestException carries no headers; the response (Retry-After...) is here.
        last_response: Any = None

        def request(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith(".twilio.com"):
                url = parts._replace(scheme=target.scheme, netloc=target.netloc).geturl()
            self.last_response = super().request(method, url, *args, **kw)
            return self.last_response

    return RedirectingHttpClient(**kwargs)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)  # "Thu, 30 Jul 2015 20:12:31 +0000", as Twilio writes


class TwilioFake(FakeProvider):
    name = "twilio"
    default_port = DEFAULT_PORT

    def __init__(
        self,
        *,
        auth_token: str | None = None,
        undeliverable: Sequence[str] = (),
        hang_seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.auth_token = auth_token
        self.undeliverable = set(undeliverable)
        self.reset_data()

    def reset_data(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        account = rf"/{API_VERSION}/Accounts/(?P<account_sid>[^/]+)"
        return [
            ("POST", rf"{account}/Messages\.json", "messages.create", self._create),
            ("GET", rf"{account}/Messages/(?P<sid>[^/]+)\.json", "messages.fetch", self._fetch),
        ]

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        code = _ERROR_CODES.get(status, 20500 if status >= 500 else 20001)
        return self._twilio_error(status, code, message, headers)

    def _twilio_error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        return Response.json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            {"Twilio-Request-Id": random_id("RQ", 32, _HEX)} | (headers or {}),
        )

    def _credentials(self, request: Request, account_sid: str) -> str | None:
        """The secret the request authenticated with, or None if it did not."""
        auth = request.header("Authorization") or ""
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, secret = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if not secret or not (user == account_sid or user.startswith("SK")):
            return None
        if self.auth_token is not None and user.startswith("AC") and secret != self.auth_token:
            return None
        return secret

    def _unauthorized(self) -> Response:
        return self._twilio_error(401, 20003, "Authenticate")

    def _create(self, request: Request, account_sid: str) -> Response:
        secret = self._credentials(request, account_sid)
        if secret is None:
            return self._unauthorized()
        form = {name: values[-1] for name, values in request.form().items()}
        to, sender = form.get("To"), form.get("From")
        service = form.get("MessagingServiceSid")
        if not to:
            return self._twilio_error(400, 21604, "A 'To' phone number is required.")
        if not (sender or service):
            return self._twilio_error(400, 21603, "A 'From' phone number is required.")
        media = request.form().get("MediaUrl", [])
        if not (form.get("Body") or media):
            return self._twilio_error(400, 21602, "Message body is required.")
        if to == INVALID_NUMBER:
            return self._twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        sid = random_id("SM", 32, _HEX)
        now = _rfc2822(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
        message = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(max(1, -(-len(form.get("Body", "")) // 160))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        with self.lock:
            self.messages[sid] = message
        callback = form.get("StatusCallback")
        # Twilio signs with the account's auth token; an API key's secret is not it.
        signing_token = self.auth_token or secret
        response = Response.json(201, message)  # as queued: serialized before it moves on
        post_in_background(
            lambda: self._progress(sid, callback, signing_token), f"twilio-status-{sid}"
        )
        return response

    def _progress(self, sid: str, callback: str | None, auth_token: str) -> None:
        """Move the message to sent, then delivered (or undelivered), calling back each."""
        with self.lock:
            to = self.messages[sid]["to"]
        final = "undelivered" if to in self.undeliverable else "delivered"
        for status in ("sent", final):
            with self.lock:
                message = self.messages.get(sid)
                if message is None:  # reset meanwhile
                    return
                now = _rfc2822(datetime.now(UTC))
                message["status"] = status
                message["date_updated"] = now
                message["date_sent"] = message["date_sent"] or now
                if status == "undelivered":
                    message["error_code"] = 30003
                    message["error_message"] = "Unreachable destination handset"
                params = {
                    "AccountSid": message["account_sid"],
                    "ApiVersion": API_VERSION,
                    "From": message["from"] or "",
                    "MessageSid": sid,
                    "MessageStatus": status,
                    "SmsSid": sid,
                    "SmsStatus": status,
                    "To": message["to"],
                }
                if message["messaging_service_sid"]:
                    params["MessagingServiceSid"] = message["messaging_service_sid"]
                if status == "undelivered":
                    params["ErrorCode"] = "30003"
            if callback:
                record_delivery(self, send_status_callback(callback, params, auth_token))

    def _fetch(self, request: Request, account_sid: str, sid: str) -> Response:
        if self._credentials(request, account_sid) is None:
            return self._unauthorized()
        with self.lock:
            message = self.messages.get(sid)
        if message is None or message["account_sid"] != account_sid:
            return self._twilio_error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        return Response.json(200, message)


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[TwilioFake]:
    """A running :class:`TwilioFake` (on any free port by default) for the ``with`` block."""
    with TwilioFake(**options).start(port) as fake:
        yield fake

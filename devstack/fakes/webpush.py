"""Fake Web Push service: what a browser vendor's push service does with a push.

Follows RFC 8030 (Web Push), RFC 8291 (message encryption, ``aes128gcm``) and RFC 8292
(VAPID): ``POST /push/<token>`` with an encrypted body, ``TTL`` and
``Authorization: vapid t=<JWT>, k=<public key>`` answers 201 with a ``Location``; a
token in ``expired`` answers 410 Gone (the browser dropped the subscription); a request
without VAPID or encoding is a 400/401.

:meth:`WebPushFake.subscribe` plays the browser: it makes the subscription's keys (and
keeps the private half) and returns the PushSubscription JSON; :meth:`WebPushFake.payloads`
decrypts what was pushed to it, so a test or the Outbox can read the messages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.fakes.base import FakeProvider, Handler, Request, Response, random_id

DEFAULT_PORT = 12116


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class WebPushFake(FakeProvider):
    name = "webpush"
    default_port = DEFAULT_PORT

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reset_data()

    def reset_data(self) -> None:
        self.browsers: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}
        self.expired: set[str] = set()

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("POST", r"/push/(?P<token>[^/]+)", "push", self._push)]

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        return Response.json(status, {"code": status, "errno": 999, "error": message}, headers)

    def subscribe(self, token: str | None = None) -> dict[str, Any]:
        """A new browser subscription (PushSubscription.toJSON())."""
        token = token or random_id("", 16)
        private = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        with self.lock:
            self.browsers[token] = (private, auth)
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.url}/push/{token}",
            "keys": {"p256dh": _b64url(public), "auth": _b64url(auth)},
        }

    def expire(self, token_or_endpoint: str) -> None:
        """The browser unsubscribed: pushes to it answer 410 from now on."""
        with self.lock:
            self.expired.add(token_or_endpoint.rstrip("/").rsplit("/", 1)[-1])

    def _push(self, request: Request, token: str) -> Response:
        auth = request.header("Authorization") or ""
        if not auth.lower().startswith("vapid ") or "t=" not in auth or "k=" not in auth:
            return self.error_response(401, "VAPID Authorization header required")
        if request.body and request.header("Content-Encoding") != "aes128gcm":
            return self.error_response(400, "Content-Encoding aes128gcm required")
        with self.lock:
            if token in self.expired or token not in self.browsers:
                return self.error_response(410, "push subscription has expired or unsubscribed")
        return Response(201, b"", {"Location": f"{self.url}/m/{random_id('', 20)}"})

    def payloads(self, token: str | None = None) -> list[Any]:
        """The decrypted JSON (or text) of every accepted push, to ``token`` or to any."""
        import http_ece

        found = []
        for request in self.requests:
            if request.route != "push" or request.status != 201:
                continue
            to = request.path.rsplit("/", 1)[-1]
            if token is not None and to != token:
                continue
            with self.lock:
                private, auth = self.browsers[to]
            raw = http_ece.decrypt(
                request.body, private_key=private, auth_secret=auth, version="aes128gcm"
            )
            try:
                found.append(json.loads(raw))
            except ValueError:
                found.append(raw.decode("utf-8", errors="replace"))
        return found


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[WebPushFake]:
    """A running :class:`WebPushFake` (on any free port by default) for the ``with`` block."""
    with WebPushFake(**options).start(port) as fake:
        yield fake

"""Outbound webhooks of the fakes, and a receiver to catch them in tests.

Providers call back: Stripe posts events, Twilio posts message status callbacks, SendGrid
posts its event webhook. The fakes do the same through :func:`post` (plain urllib, the
signature headers computed by each provider module), each attempt kept in a
:class:`Delivery` on the fake. :class:`WebhookReceiver` is a fake of *our* side, for
tests: it answers 200 to any POST and records it, and it takes the same fault switches as
a provider fake (answer 500 to see a provider's retry, say).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from devstack.fakes.base import FakeProvider, Handler, Request, Response

# How long a fake waits for our webhook endpoint to answer. Stripe allows its endpoints
# a few seconds too; a slow endpoint shows up as a failed delivery.
DELIVERY_TIMEOUT_SECONDS = 10.0


@dataclass
class Delivery:
    """One webhook POST made by a fake, and how it went."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = DELIVERY_TIMEOUT_SECONDS
) -> Delivery:
    """POST ``body`` to ``url``; the outcome is in the returned delivery (never raises
    for HTTP or network errors: a provider records a failed delivery and moves on)."""
    delivery = Delivery(url=url, body=body, headers=dict(headers))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - URLs come from our own config
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            delivery.status = response.status
    except urllib.error.HTTPError as exc:
        delivery.status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        delivery.error = repr(exc)
    return delivery


def post_in_background(send: Callable[[], object], name: str) -> threading.Thread:
    """Run ``send()`` in a daemon thread: a provider answers the API call first and
    calls back afterwards."""
    thread = threading.Thread(target=send, name=name, daemon=True)
    thread.start()
    return thread


def deliver_in_background(fake: FakeProvider, send: Callable[[], Delivery], name: str) -> None:
    """Call back in a daemon thread (the provider answers the API call first) and keep
    the outcome in ``fake.deliveries``."""

    def deliver() -> None:
        record_delivery(fake, send())

    post_in_background(deliver, name)


def record_delivery(fake: FakeProvider, delivery: Delivery) -> None:
    """Keep one callback's outcome in ``fake.deliveries`` (under the fake's lock)."""
    with fake.lock:
        fake.deliveries.append(delivery)  # type: ignore[attr-defined]


class WebhookReceiver(FakeProvider):
    """Records every request to any path and answers 200 ``{"received": true}``."""

    name = "webhook-receiver"

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("POST", r"/.*", "webhook", self._receive),
            ("GET", r"/.*", "get", self._receive),
        ]

    def _receive(self, request: Request) -> Response:
        return Response.json(200, {"received": True})

    def received(self, path: str | None = None) -> list[Request]:
        """The POSTs received, to ``path`` or to any path."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.status == 200 and (path is None or r.path == path)
        ]


@contextlib.contextmanager
def serve(port: int = 0) -> Iterator[WebhookReceiver]:
    """A running :class:`WebhookReceiver` for the ``with`` block."""
    with WebhookReceiver().start(port) as receiver:
        yield receiver

"""Fake Stripe API: customers, payment intents with idempotency keys, signed webhook events.

Follows the Stripe API reference (https://docs.stripe.com/api): form-encoded requests with
``a[b]=c`` nesting, ``Authorization: Bearer sk_test_...``, JSON objects in Stripe's shapes,
errors as ``{"error": {"type", "code", "message", "param"}}``, a ``Request-Id`` header.

- ``POST /v1/customers``, ``GET /v1/customers/{id}``
- ``POST /v1/payment_intents`` (with ``confirm=true`` and a test payment method:
  ``pm_card_visa`` succeeds, ``pm_card_chargeDeclined`` and
  ``pm_card_chargeDeclinedInsufficientFunds`` are declined with a 402 ``card_error``,
  ``pm_card_authenticationRequired`` needs action), ``GET /v1/payment_intents/{id}``
- Idempotency (https://docs.stripe.com/api/idempotent_requests): a POST's
  ``Idempotency-Key`` saves its status and body; the same key with the same parameters
  replays them (``Idempotent-Replayed: true``), with other parameters it is a 400
  ``idempotency_error``. As at Stripe, an injected 429/5xx saves nothing.
- Events (https://docs.stripe.com/webhooks): every change makes an ``event`` object in
  ``fake.events``; with ``webhook_url`` set they are POSTed there, signed with
  ``webhook_secret`` in the ``Stripe-Signature: t=...,v1=...`` header
  (:func:`sign_payload`, verifiable by ``stripe.Webhook.construct_event``).

Point the SDK here with ``StripeClient(key, base_addresses={"api": fake.url})`` or
``stripe.api_base = fake.url``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from devstack.fakes.base import (
    DEFAULT_HANG_SECONDS,
    FakeProvider,
    Handler,
    Request,
    Response,
    random_id,
)
from devstack.fakes.webhooks import Delivery, deliver_in_background, post

DEFAULT_PORT = 12111  # stripe-mock's port, so tools that know it find this fake too
# The API version the fake stamps on events when the request names none: the one
# stripe-python 16.1 pins (stripe/_api_version.py).
DEFAULT_API_VERSION = "2026-10-28.endive"
# A development secret only: the real one comes from the Stripe dashboard.
DEV_WEBHOOK_SECRET = "whsec_taskyard_development_only"  # noqa: S105

DECLINES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_visa_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}
NEEDS_ACTION = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}
_KEY_RE = re.compile(r"^[^\[\]]+|\[([^\[\]]*)\]")


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``: ``t=<unix time>,v1=<hex
    HMAC-SHA256 of "<t>.<payload>" keyed with the whole whsec_ secret>``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def event_payload(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode("utf-8")


def send_event(
    url: str, event: dict[str, Any], secret: str = DEV_WEBHOOK_SECRET, timeout: float = 10.0
) -> Delivery:
    """POST ``event`` to ``url`` signed like Stripe; the outcome is in the delivery."""
    body = event_payload(event)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": sign_payload(body, secret),
    }
    return post(url, body, headers, timeout=timeout)


def build_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    api_version: str = DEFAULT_API_VERSION,
) -> dict[str, Any]:
    """An ``event`` object (https://docs.stripe.com/api/events/object) about ``obj``."""
    return {
        "id": random_id("evt_"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding to nested dicts and lists: ``metadata[a]=1`` →
    ``{"metadata": {"a": "1"}}``, ``expand[0]=x`` → ``{"expand": ["x"]}``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        parts = [
            m.group(1) if m.group(1) is not None else m.group(0) for m in _KEY_RE.finditer(key)
        ]
        node: dict[str, Any] = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() or k == "" for k in converted):
        return [converted[k] for k in sorted(converted, key=lambda k: int(k or 0))]
    return converted


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


class StripeFake(FakeProvider):
    name = "stripe"
    default_port = DEFAULT_PORT

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str = DEV_WEBHOOK_SECRET,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.reset_data()

    def reset_data(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        # Idempotency-Key → (method and path, parameters, saved response)
        self._idempotent: dict[str, tuple[str, list[tuple[str, str]], Response]] = {}

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("POST", r"/v1/customers", "customers.create", self._customer_create),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", "customers.retrieve", self._customer_get),
            ("POST", r"/v1/payment_intents", "payment_intents.create", self._intent_create),
            (
                "GET",
                r"/v1/payment_intents/(?P<id>[^/]+)",
                "payment_intents.retrieve",
                self._intent_get,
            ),
        ]

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        if status == 429:
            error = {
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly. We recommend an "
                "exponential backoff of your requests.",
                "type": "invalid_request_error",
            }
        elif status >= 500:
            error = {"message": message, "type": "api_error"}
        else:
            error = {"message": message, "type": "invalid_request_error"}
        return self._stripe_response(status, {"error": error}, headers)

    def _stripe_response(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        return Response.json(
            status,
            payload,
            {"Request-Id": random_id("req_", 14), "Stripe-Version": DEFAULT_API_VERSION}
            | (headers or {}),
        )

    def _error(self, status: int, error: dict[str, Any]) -> Response:
        return self._stripe_response(status, {"error": {"type": "invalid_request_error"} | error})

    # -- dispatch with authentication and idempotency ---------------------------------

    def dispatch(self, request: Request) -> Response | None:
        if request.path.startswith("/_fake"):
            return super().dispatch(request)
        auth = request.header("Authorization") or ""
        if not re.fullmatch(r"Bearer (sk|rk)_test_\S+", auth):
            request.route = "unauthorized"
            with self.lock:
                self._requests.append(request)
            request.status = 401
            return self._error(
                401,
                {
                    "message": "Invalid API Key provided (the fake takes test keys only: "
                    "sk_test_...)."
                },
            )
        return super().dispatch(request)

    def _idempotent_call(self, request: Request, create: Handler) -> Response:
        key = request.header("Idempotency-Key")
        if not key:
            return create(request)
        params = sorted(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        target = f"{request.method} {request.path}"
        with self.lock:
            saved = self._idempotent.get(key)
            if saved is None:
                response = create(request)
                response.headers["Idempotency-Key"] = key
                self._idempotent[key] = (target, params, response)
                return response
        saved_target, saved_params, saved_response = saved
        if saved_target != target or saved_params != params:
            return self._stripe_response(
                400,
                {
                    "error": {
                        "message": "Keys for idempotent requests can only be used with the "
                        "same parameters they were first used with. Try using a key other "
                        f"than '{key}' if you meant to execute a different request.",
                        "type": "idempotency_error",
                    }
                },
            )
        return Response(
            saved_response.status,
            saved_response.body,
            saved_response.headers | {"Idempotent-Replayed": "true"},
        )

    def _emit(self, event_type: str, obj: dict[str, Any], request: Request) -> None:
        event = build_event(
            event_type,
            json.loads(json.dumps(obj)),  # a snapshot, as Stripe sends
            request_id=None,
            idempotency_key=request.header("Idempotency-Key"),
            api_version=request.header("Stripe-Version") or DEFAULT_API_VERSION,
        )
        with self.lock:
            self.events.append(event)
        if self.webhook_url:
            url, secret = self.webhook_url, self.webhook_secret
            deliver_in_background(
                self, lambda: send_event(url, event, secret), f"stripe-event-{event['id']}"
            )

    # -- customers (https://docs.stripe.com/api/customers) ----------------------------

    def _customer_create(self, request: Request) -> Response:
        return self._idempotent_call(request, self._do_customer_create)

    def _do_customer_create(self, request: Request) -> Response:
        params = decode_form(request.body)
        customer = {
            "id": random_id("cus_", 14),
            "object": "customer",
            "address": params.get("address"),
            "balance": int(params.get("balance", 0)),
            "created": int(time.time()),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "discount": None,
            "email": params.get("email"),
            "invoice_prefix": random_id("", 8, "ABCDEF0123456789"),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "name": params.get("name"),
            "next_invoice_sequence": 1,
            "phone": params.get("phone"),
            "preferred_locales": params.get("preferred_locales") or [],
            "shipping": params.get("shipping"),
            "tax_exempt": params.get("tax_exempt", "none"),
            "test_clock": None,
        }
        with self.lock:
            self.customers[customer["id"]] = customer
        self._emit("customer.created", customer, request)
        return self._stripe_response(200, customer)

    def _customer_get(self, request: Request, id: str) -> Response:
        with self.lock:
            customer = self.customers.get(id)
        if customer is None:
            return self._missing("customer", id)
        return self._stripe_response(200, customer)

    def _missing(self, kind: str, object_id: str, param: str = "id") -> Response:
        return self._error(
            404 if param == "id" else 400,
            {
                "code": "resource_missing",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                "message": f"No such {kind}: '{object_id}'",
                "param": param,
            },
        )

    # -- payment intents (https://docs.stripe.com/api/payment_intents) ----------------

    def _intent_create(self, request: Request) -> Response:
        return self._idempotent_call(request, self._do_intent_create)

    def _do_intent_create(self, request: Request) -> Response:
        params = decode_form(request.body)
        for required in ("amount", "currency"):
            if required not in params:
                return self._error(
                    400,
                    {
                        "code": "parameter_missing",
                        "doc_url": "https://stripe.com/docs/error-codes/parameter-missing",
                        "message": f"Missing required param: {required}.",
                        "param": required,
                    },
                )
        try:
            amount = int(params["amount"])
        except ValueError:
            return self._error(
                400,
                {
                    "code": "parameter_invalid_integer",
                    "message": "Invalid integer: " + params["amount"],
                    "param": "amount",
                },
            )
        customer = params.get("customer")
        with self.lock:
            customer_known = customer is None or customer in self.customers
        if not customer_known:
            return self._missing("customer", customer, param="customer")
        payment_method = params.get("payment_method")
        confirm = _bool(params.get("confirm"))
        if confirm and not payment_method:
            return self._error(
                400,
                {
                    "code": "payment_intent_unexpected_state",
                    "message": "You cannot confirm this PaymentIntent because it's missing a "
                    "payment method.",
                },
            )
        intent_id = random_id("pi_")
        types = params.get("payment_method_types")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None
            if types
            else {"allow_redirects": "always", "enabled": True},
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": params.get("capture_method", "automatic_async"),
            "client_secret": f"{intent_id}_secret_{random_id('', 25)}",
            "confirmation_method": params.get("confirmation_method", "automatic"),
            "created": int(time.time()),
            "currency": params["currency"].lower(),
            "customer": customer,
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": types or ["card"],
            "processing": None,
            "receipt_email": params.get("receipt_email"),
            "review": None,
            "setup_future_usage": params.get("setup_future_usage"),
            "shipping": params.get("shipping"),
            "source": None,
            "statement_descriptor": params.get("statement_descriptor"),
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        if payment_method and not confirm:
            intent["status"] = "requires_confirmation"
        self._emit("payment_intent.created", intent, request)
        response = self._confirm(intent, request) if confirm else None
        with self.lock:
            self.payment_intents[intent_id] = intent
        return response or self._stripe_response(200, intent)

    def _confirm(self, intent: dict[str, Any], request: Request) -> Response | None:
        """Confirm with the test payment method; a decline is the response to return."""
        payment_method = intent["payment_method"]
        decline_code = DECLINES.get(payment_method)
        if decline_code:
            error = {
                "code": "card_declined",
                "decline_code": decline_code,
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": "Your card has insufficient funds."
                if decline_code == "insufficient_funds"
                else "Your card was declined.",
                "payment_method": {"id": payment_method, "object": "payment_method"},
                "type": "card_error",
            }
            intent["last_payment_error"] = error
            intent["payment_method"] = None
            intent["status"] = "requires_payment_method"
            self._emit("payment_intent.payment_failed", intent, request)
            return self._stripe_response(402, {"error": error | {"payment_intent": intent}})
        if payment_method in NEEDS_ACTION:
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            self._emit("payment_intent.requires_action", intent, request)
            return None
        intent["latest_charge"] = random_id("ch_")
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
            self._emit("payment_intent.amount_capturable_updated", intent, request)
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            self._emit("payment_intent.succeeded", intent, request)
        return None

    def _intent_get(self, request: Request, id: str) -> Response:
        with self.lock:
            intent = self.payment_intents.get(id)
        if intent is None:
            return self._missing("payment_intent", id)
        return self._stripe_response(200, intent)


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[StripeFake]:
    """A running :class:`StripeFake` (on any free port by default) for the ``with`` block."""
    with StripeFake(**options).start(port) as fake:
        yield fake

"""Charging invoices through Stripe, and recording what Stripe's webhooks say.

A charge is a PaymentIntent created and confirmed off-session with the customer's saved
payment method, with an idempotency key derived from the invoice number and the payment
try (``taskyard-<number>-<n>``): a retried or duplicated job sends the same request with
the same key and Stripe answers with the first intent, so an invoice is charged once.
The response is not taken as the outcome: only the webhook
(``payment_intent.succeeded`` / ``payment_intent.payment_failed``, billing/webhook_handlers.py)
marks a payment and its invoice. Design and production setup: docs/billing.md.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import calculation as calc
from billing import documents, reminders
from billing.models import (
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentProblem,
    PaymentStatus,
)
from billing.services import BillingError
from queueing import PermanentError, provider_call

log = logging.getLogger(__name__)
PROVIDER = "stripe"


class CardDeclined(PermanentError):
    """Stripe declined the card: retrying the same card cannot help."""


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base_url},
        http_client=stripe.RequestsClient(timeout=timeout),
        # Retries are the job ledger's (with the same idempotency key), so a 5xx or a
        # 429 is seen by the provider guard and the retry policy.
        max_network_retries=0,
    )


def stripe_client() -> stripe.StripeClient:
    if not settings.BILLING_STRIPE_API_KEY:
        raise BillingError("STRIPE_API_KEY is not set: billing cannot charge")
    spec = settings.TASKYARD_PROVIDERS[PROVIDER]
    return _client(settings.BILLING_STRIPE_API_KEY, spec["base_url"], float(spec["timeout"]))


def ensure_stripe_customer(customer: Customer) -> str:
    """The customer's Stripe id, creating the Stripe customer once (idempotency key from
    our customer code, so a retry after a lost answer finds the same one)."""
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    with provider_call(PROVIDER):
        created = stripe_client().v1.customers.create(
            params={
                "name": customer.name,
                "email": customer.email,
                "metadata": {"taskyard_customer": customer.code},
            },
            options={"idempotency_key": f"taskyard-customer-{customer.code}"},
        )
    Customer.objects.filter(id=customer.id).update(stripe_customer_id=created.id)
    customer.stripe_customer_id = created.id
    return created.id


def open_payment(invoice: Invoice) -> Payment:
    """The payment try in flight for ``invoice``, or a new one after failed tries."""
    current = invoice.payments.exclude(status=PaymentStatus.FAILED).order_by("-created_at").first()
    if current is not None:
        return current
    tries = invoice.payments.count()
    return Payment.objects.create(
        invoice=invoice,
        idempotency_key=f"taskyard-{invoice.number}-{tries + 1}",
        amount=invoice.total,
        currency=invoice.currency,
    )


def charge(invoice: Invoice) -> dict[str, Any]:
    """Ask Stripe to charge ``invoice`` (once, whatever the retries). Returns what was
    done; the outcome arrives by webhook. CardDeclined on a decline (permanent); Stripe's
    429 defers the job, its 5xx and connection errors are retried by the policy."""
    if invoice.status != InvoiceStatus.ISSUED:
        return {"skipped": f"invoice is {invoice.status}"}
    if invoice.total <= 0:
        return {"skipped": "nothing to charge"}
    customer = invoice.customer
    if not customer.stripe_payment_method:
        return {"skipped": "no saved payment method: paid by transfer"}
    payment = open_payment(invoice)
    if payment.status == PaymentStatus.SUCCEEDED:
        return {"skipped": "already paid", "payment": payment.id}
    stripe_customer = ensure_stripe_customer(customer)
    params: stripe.params.PaymentIntentCreateParams = {
        "amount": calc.to_minor_units(payment.amount, payment.currency),
        "currency": payment.currency.lower(),
        "customer": stripe_customer,
        "payment_method": customer.stripe_payment_method,
        "confirm": True,
        "off_session": True,
        "description": f"Invoice {invoice.number}",
        "metadata": {"taskyard_payment": str(payment.id), "invoice": invoice.number},
    }
    try:
        with provider_call(PROVIDER):
            intent = stripe_client().v1.payment_intents.create(
                params=params, options={"idempotency_key": payment.idempotency_key}
            )
    except stripe.CardError as exc:
        # The webhook (payment_intent.payment_failed) records the failure on the payment.
        log.warning("invoice %s: card declined (%s)", invoice.number, exc.code)
        raise CardDeclined(f"invoice {invoice.number}: card declined ({exc.code})") from exc
    Payment.objects.filter(id=payment.id, stripe_payment_intent_id="").update(
        stripe_payment_intent_id=intent.id
    )
    Payment.objects.filter(id=payment.id, status=PaymentStatus.PENDING).update(
        status=PaymentStatus.PROCESSING
    )
    return {"payment": payment.id, "intent": intent.id, "stripe_status": intent.status}


def _payment_for(intent: dict[str, Any]) -> Payment | None:
    payment_id = (intent.get("metadata") or {}).get("taskyard_payment")
    rows = Payment.objects.select_for_update()
    if payment_id and str(payment_id).isdigit():
        return rows.filter(id=int(payment_id)).first()
    return rows.filter(stripe_payment_intent_id=intent.get("id", "")).first()


def record_intent_event(event_type: str, intent: dict[str, Any]) -> str:
    """Apply a payment_intent webhook to its payment and invoice; idempotent (an event
    processed twice, or after a later one, changes nothing more). Returns what it did."""
    with transaction.atomic():
        payment = _payment_for(intent)
        if payment is None:
            log.info("stripe %s for %s: not a billing payment", event_type, intent.get("id"))
            return "not a billing payment"
        if payment.status == PaymentStatus.SUCCEEDED:
            return "already succeeded"
        payment.stripe_payment_intent_id = intent.get("id", payment.stripe_payment_intent_id)
        if event_type == "payment_intent.payment_failed":
            error = intent.get("last_payment_error") or {}
            payment.status = PaymentStatus.FAILED
            payment.error = str(error.get("message") or error.get("code") or "failed")[:300]
            payment.save(update_fields=["status", "error", "stripe_payment_intent_id"])
            log.warning(
                "payment %s of %s failed: %s", payment.id, payment.invoice_id, payment.error
            )
            return "failed"
        # Stripe took the money: the payment succeeded whatever comes next. Only an
        # open invoice for the amount charged is marked paid; anything else is flagged
        # on the payment (admin: Payments, filter "problem") and logged at ERROR.
        payment.status = PaymentStatus.SUCCEEDED
        payment.error = ""
        payment.problem = _problem(payment, intent)
        payment.save(update_fields=["status", "error", "problem", "stripe_payment_intent_id"])
        if payment.problem:
            return f"succeeded, flagged {payment.problem}"
        Invoice.objects.filter(id=payment.invoice_id).update(
            status=InvoiceStatus.PAID, paid_at=timezone.now()
        )
        reminders.cancel_pending(payment.invoice_id)
        documents.request(payment.invoice_id, "receipt")
        reminders.notify_receipt(payment.invoice_id)
        return "succeeded"


def _problem(payment: Payment, intent: dict[str, Any]) -> str:
    """Why this succeeded payment cannot mark its invoice paid ("" when it can). Called
    with the payment locked; locks the invoice too (a credit note takes the same lock)."""
    invoice = Invoice.objects.select_for_update().get(id=payment.invoice_id)
    if invoice.status != InvoiceStatus.ISSUED:
        log.error(
            "payment %s (intent %s) succeeded on invoice %s (id %s), which is %s: refund due",
            payment.id,
            payment.stripe_payment_intent_id,
            invoice.number,
            invoice.id,
            invoice.status,
        )
        return PaymentProblem.REFUND_DUE
    received = int(intent.get("amount_received") or intent.get("amount") or 0)
    expected = calc.to_minor_units(invoice.total, invoice.currency)
    if received != expected or intent.get("currency", payment.currency.lower()) != (
        invoice.currency.lower()
    ):
        log.error(
            "payment %s (intent %s) on invoice %s (id %s): Stripe received %s %s, the "
            "invoice is %s %s; not marked paid",
            payment.id,
            payment.stripe_payment_intent_id,
            invoice.number,
            invoice.id,
            received,
            intent.get("currency"),
            expected,
            invoice.currency.lower(),
        )
        return PaymentProblem.AMOUNT_MISMATCH
    return PaymentProblem.NONE

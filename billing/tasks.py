"""Billing's jobs: thin wrappers that load by id and call billing's services.

billing.run_billing     the run (schedule or API): one bill_customer job per customer
billing.bill_customer   issue one invoice, atomic with the job's success
billing.charge_invoice  Stripe PaymentIntent, idempotent; outcome by webhook
billing.render_document invoice/receipt PDF, 20/min and 3 at a time (seed)
billing.send_reminder   payment reminder, unless paid or cancelled
billing.send_receipt    receipt after the payment webhook
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing import documents, payments, reminders, runs
from billing.models import Invoice
from queueing import Contract, job


class RunBillingArgs(Contract):
    """Bill a period (all customers, or one), or preview it with dry_run."""

    period = serializers.RegexField(
        r"^(previous|\d{4}-(0[1-9]|1[0-2]))$",
        max_length=8,
        required=False,
        help_text='"YYYY-MM", or "previous" (the month before today, business time zone)',
        error_messages={"invalid": 'a month as "YYYY-MM", or "previous"'},
    )
    customer = serializers.CharField(
        max_length=40, required=False, help_text="a customer code: bill only this customer"
    )
    dry_run = serializers.BooleanField(
        required=False, help_text="answer with the invoices it would issue; write nothing"
    )


@job(
    queue="billing",
    name="billing.run_billing",
    api=RunBillingArgs,
    roles=("manager",),
    # No unique key: a second run finds the customers invoiced or their jobs active
    # (their own keys), so it enqueues nothing twice.
    atomic=True,
    bind=True,
)
def run_billing(
    self: Any, period: str = "previous", customer: str = "", dry_run: bool = False
) -> dict[str, Any]:
    """Enqueue one billing job per customer to invoice for ``period``."""
    if dry_run:
        return runs.preview(period, customer)
    return runs.start(period, customer, job_id=self.job_id)


@job(
    queue="billing",
    name="billing.bill_customer",
    unique_key="billing:{customer_id}:{period}",
    atomic=True,
)
def bill_customer(customer_id: int, period: str, run_id: int | None = None) -> dict[str, Any]:
    """Issue the invoice of one customer for one period (and enqueue its follow-ups)."""
    return runs.bill(customer_id, period, run_id)


# Stripe's 5xx clear within seconds to minutes: more tries, sooner, than the billing
# queue's default (3 tries from 30 s), and never past an hour. Idempotency keys make
# every retry safe; 429s defer the job without spending a try (provider guard).
CHARGE_RETRY = {"max_attempts": 8, "base_delay": 2.0, "max_delay": 3600.0}


@job(
    queue="billing",
    name="billing.charge_invoice",
    unique_key="charge:{invoice_id}",
    providers=("stripe",),
    retry=CHARGE_RETRY,
    permanent_for=(payments.CardDeclined,),
)
def charge_invoice(invoice_id: int) -> dict[str, Any]:
    """Create the invoice's Stripe PaymentIntent (once); the webhook confirms it."""
    invoice = Invoice.objects.select_related("customer").filter(id=invoice_id).first()
    if invoice is None:
        return {"skipped": "no such invoice"}
    return payments.charge(invoice)


@job(
    queue="billing",
    name="billing.render_document",
    unique_key="document:{invoice_id}:{kind}",
    rate_limit="billing-pdf",
    concurrency_key="billing-pdf",
    concurrency_limit=3,
)
def render_document(invoice_id: int, kind: str) -> dict[str, Any]:
    """Render and store the invoice's PDF of ``kind`` ("invoice" or "receipt")."""
    invoice = Invoice.objects.select_related("customer", "period").filter(id=invoice_id).first()
    if invoice is None:
        return {"skipped": "no such invoice"}
    document = documents.store(invoice, kind)
    return {"document": document.id, "bytes": len(document.content)}


@job(queue="notifications", name="billing.send_reminder", atomic=True)
def send_reminder(reminder_id: int) -> str:
    """Send one payment reminder (the row is marked sent, and the notifications app's
    message queued, in the same transaction)."""
    return reminders.send(reminder_id)


@job(
    queue="notifications",
    name="billing.send_receipt",
    unique_key="receipt:{invoice_id}",
    atomic=True,
)
def send_receipt(invoice_id: int) -> str:
    """Send the receipt of a paid invoice (its message queued with the job's success)."""
    return reminders.send_receipt(invoice_id)

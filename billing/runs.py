"""The billing run: one job per customer and period, then per invoice its follow-ups
(charge, PDF, reminders), each enqueued in the transaction that issues the invoice.

Why a rerun or a second beat bills nobody twice: the per-customer job's unique key
(``billing:<customer>:<period>``) merges duplicates while one is active, the run skips
customers already invoiced for the period, and the (customer, period) unique constraint
on Invoice refuses a second invoice whatever else happens. docs/billing.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum

from billing import documents, reminders, services
from billing.models import BillingRun, Customer, Invoice, InvoiceStatus
from queueing import Job, JobStatus, enqueue

log = logging.getLogger(__name__)

RUN_TASK = "billing.run_billing"
BILL_TASK = "billing.bill_customer"
CHARGE_TASK = "billing.charge_invoice"
# The run page lists at most this many failed customers and failed charges.
SUMMARY_MAX_FAILURES = 100
# A dry run answers with at most this many invoices (and the count of all of them): a
# preview of 10,000 customers would be a response of many megabytes.
DRY_RUN_MAX_INVOICES = 200


def _scope(period_label: str, customer_code: str) -> tuple[Any, Any]:
    period = services.get_period(period_label)
    customers = services.billable_customers(period)
    if customer_code:
        customers = customers.filter(code=customer_code)
        if not customers.exists() and not Customer.objects.filter(code=customer_code).exists():
            raise services.BillingError(f"no customer {customer_code!r}")
    return period, customers


def preview(period: str, customer_code: str = "") -> dict[str, Any]:
    """The invoices a run would issue now (customers already invoiced are left out);
    writes nothing but the period row."""
    label = services.resolve_period_label(period)
    billing_period, customers = _scope(label, customer_code)
    pending = customers.exclude(invoices__period=billing_period)
    drafts: list[dict[str, Any]] = []
    count = 0
    for customer in pending.iterator(chunk_size=500):
        draft = services.draft_invoice(customer, billing_period)
        if not draft.lines:
            continue
        count += 1
        if len(drafts) < DRY_RUN_MAX_INVOICES:
            drafts.append(draft.as_json())
    return {
        "dry_run": True,
        "period": label,
        "count": count,
        "truncated": count > len(drafts),
        "invoices": drafts,
    }


def request_run(period: str, customer_code: str = "", user: Any = None) -> Job:
    """Enqueue a billing run as the API does (``billing.run_billing``) for the admin's
    "Bill a period", in the caller's transaction. Its unique key (period and customer)
    makes a double click return the run already waiting; the customers' own keys and
    the one-invoice constraint make any rerun bill only what is missing. ValueError for
    a malformed period."""
    label = services.resolve_period_label(period)
    return enqueue(
        RUN_TASK,
        kwargs={"period": label, "customer": customer_code},
        user=user,
        unique_key=f"billing-run:{label}:{customer_code or '*'}",
    )


def request_charge(invoice_id: int, user: Any = None) -> Job:
    """Enqueue the invoice's charge again (admin "Charge again"); the charge job's unique
    key returns the one still active, and the payment's idempotency key keeps a payment
    in flight from being charged twice."""
    return enqueue(CHARGE_TASK, kwargs={"invoice_id": invoice_id}, user=user)


def start(period: str, customer_code: str = "", job_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Record the run and enqueue one billing job per customer not invoiced yet. Call in
    the run job's transaction (atomic): the run and its jobs commit together."""
    label = services.resolve_period_label(period)
    billing_period, customers = _scope(label, customer_code)
    run = BillingRun.objects.create(
        period=billing_period,
        customer=Customer.objects.filter(code=customer_code).first() if customer_code else None,
        job_id=job_id,
    )
    pending = customers.exclude(invoices__period=billing_period).values_list("id", flat=True)
    enqueued = 0
    for customer_id in pending.iterator(chunk_size=1000):
        enqueue(BILL_TASK, kwargs={"customer_id": customer_id, "period": label, "run_id": run.id})
        enqueued += 1
    BillingRun.objects.filter(id=run.id).update(customers_enqueued=enqueued)
    log.info("billing run %s of %s: %s customers enqueued", run.id, label, enqueued)
    return {"run": run.id, "period": label, "customers": enqueued}


def bill(customer_id: int, period: str, run_id: int | None = None) -> dict[str, Any]:
    """Issue one customer's invoice for ``period`` and enqueue its charge, PDF and
    reminders (in the caller's transaction). A customer already invoiced: nothing new."""
    customer = Customer.objects.filter(id=customer_id).first()
    if customer is None:
        return {"skipped": "no such customer"}
    billing_period = services.get_period(period)
    run = BillingRun.objects.filter(id=run_id).first() if run_id else None
    invoice, created = services.issue_invoice(customer, billing_period, run=run)
    if invoice is None:
        return {"skipped": "nothing to bill"}
    if created:
        if invoice.total > 0:
            enqueue("billing.charge_invoice", kwargs={"invoice_id": invoice.id})
        if settings.BILLING_PDF_ON_ISSUE:
            documents.request(invoice.id, "invoice")
        reminders.schedule(invoice)
    return {"invoice": invoice.number, "total": str(invoice.total), "created": created}


def summary(run: BillingRun) -> dict[str, Any]:
    """What the admin's billing-run page shows: customers, invoices and totals per
    currency, and the customers whose job failed (dead) or is still waiting."""
    invoices = Invoice.objects.filter(run=run)
    totals = list(
        invoices.values("currency")
        .annotate(count=Count("id"), total=Sum("total"))
        .order_by("currency")
    )
    jobs = Job.objects.filter(task_name=BILL_TASK, kwargs__run_id=run.id)
    failed = list(
        jobs.filter(status=JobStatus.DEAD).values_list("kwargs", "last_error_message")[
            :SUMMARY_MAX_FAILURES
        ]
    )
    return {
        "customers": run.customers_enqueued,
        "invoices": invoices.count(),
        "totals": totals,
        "waiting": jobs.filter(
            ~Q(status__in=[JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED])
        ).count(),
        "failed": [
            {"customer_id": kwargs.get("customer_id"), "error": error} for kwargs, error in failed
        ],
        "failed_charges": failed_charges(run),
    }


def failed_charges(run: BillingRun) -> list[dict[str, Any]]:
    """The run's invoices still issued whose latest charge job is dead (a declined card,
    a Stripe error past its retries): what "Charge again" is for. Dead charge jobs are
    few, so they are found first, then matched to the run's invoices."""
    charges = Job.objects.filter(task_name=CHARGE_TASK)
    dead_ids: set[int] = {
        kwargs["invoice_id"]
        for kwargs in charges.filter(status=JobStatus.DEAD).values_list("kwargs", flat=True)
        if isinstance(kwargs, dict) and isinstance(kwargs.get("invoice_id"), int)
    }
    candidates = set(
        Invoice.objects.filter(run=run, id__in=dead_ids, status=InvoiceStatus.ISSUED).values_list(
            "id", flat=True
        )
    )
    if not candidates:
        return []
    latest: dict[int, tuple[str, str, Any]] = {}
    rows = charges.filter(kwargs__invoice_id__in=list(candidates)).order_by("enqueued_at")
    for kwargs, status, error, job_id in rows.values_list(
        "kwargs", "status", "last_error_message", "id"
    ):
        latest[kwargs["invoice_id"]] = (status, error, job_id)  # the newest job wins
    numbers = dict(Invoice.objects.filter(id__in=candidates).values_list("id", "number"))
    failed = sorted(
        (numbers[invoice_id], invoice_id, error, job_id)
        for invoice_id, (status, error, job_id) in latest.items()
        if status == JobStatus.DEAD
    )[:SUMMARY_MAX_FAILURES]
    return [
        {"invoice_id": invoice_id, "invoice": number, "error": error, "job": str(job_id)}
        for number, invoice_id, error, job_id in failed
    ]

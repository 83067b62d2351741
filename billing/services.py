"""Invoicing: periods, tax rules, drafting and issuing invoices with gap-free numbers,
credit notes, and who a billing run bills. Plain functions, testable without Celery; the
jobs in billing/tasks.py call them. Design: docs/billing.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from billing import calculation as calc
from billing.models import (
    BillingPeriod,
    BillingRun,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NumberSequence,
    ServiceContract,
    ServiceEvent,
    TaxRule,
)
from queueing import PermanentError

log = logging.getLogger(__name__)


class BillingError(PermanentError):
    """Retrying cannot help (missing tax rule, unknown period...): a dead letter to fix."""


class MissingTaxRule(BillingError):
    pass


def business_today() -> dt.date:
    return timezone.now().astimezone(ZoneInfo(settings.BUSINESS_TIME_ZONE)).date()


def resolve_period_label(period: str, today: dt.date | None = None) -> str:
    """``"previous"`` (the month before today in the business time zone) or "YYYY-MM"."""
    if period == "previous":
        return calc.previous_month_label(today or business_today())
    calc.month_bounds(period)  # ValueError when malformed
    return period


def get_period(label: str) -> BillingPeriod:
    start, end = calc.month_bounds(label)
    try:
        with transaction.atomic():
            period, _ = BillingPeriod.objects.get_or_create(
                label=label, defaults={"start": start, "end": end}
            )
    except IntegrityError:  # created by a concurrent run
        period = BillingPeriod.objects.get(label=label)
    return period


def tax_rate_for(region: str, on: dt.date) -> Decimal:
    """The rate of ``region``'s rule in force on ``on`` (the period's last day: the supply
    date of the month's service). MissingTaxRule when none is."""
    rule = (
        TaxRule.objects.filter(region=region, valid_from__lte=on)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=on))
        .order_by("-valid_from")
        .first()
    )
    if rule is None:
        raise MissingTaxRule(f"no tax rule for region {region!r} on {on}")
    return rule.rate


def billable_customers(period: BillingPeriod) -> QuerySet[Customer]:
    """Customers with a contract active on at least one day of ``period``."""
    active = ServiceContract.objects.filter(start_date__lte=period.end).filter(
        Q(end_date__isnull=True) | Q(end_date__gte=period.start)
    )
    return Customer.objects.filter(id__in=active.values("customer_id")).order_by("id")


def contract_terms(contract: ServiceContract) -> calc.ContractTerms:
    return calc.ContractTerms(
        id=contract.id,
        description=f"{contract.plan} {contract.containers}x {contract.container_size}",
        base_monthly_fee=contract.base_monthly_fee,
        price_per_pickup=contract.price_per_pickup,
        price_extra_pickup=contract.price_extra_pickup,
        price_overweight_per_kg=contract.price_overweight_per_kg,
        start_date=contract.start_date,
        end_date=contract.end_date,
        proration=contract.proration,
    )


@dataclass(frozen=True)
class InvoiceDraft:
    customer: Customer
    period: BillingPeriod
    lines: list[calc.TaxedLine]
    totals: calc.Totals
    tax_rate: Decimal

    def as_json(self) -> dict:
        return {
            "customer": self.customer.code,
            "period": self.period.label,
            "currency": self.customer.currency,
            "tax_rate": str(self.tax_rate),
            "subtotal": str(self.totals.subtotal),
            "tax": str(self.totals.tax),
            "total": str(self.totals.total),
            "lines": [
                {
                    "description": line.description,
                    "quantity": str(line.quantity),
                    "unit_price": str(line.unit_price),
                    "net": str(line.net),
                    "tax": str(line.tax),
                    "total": str(line.total),
                }
                for line in self.lines
            ],
        }


def draft_invoice(customer: Customer, period: BillingPeriod) -> InvoiceDraft:
    """What the invoice of ``customer`` for ``period`` would be; writes nothing."""
    contracts = list(ServiceContract.objects.filter(customer=customer, start_date__lte=period.end))
    usage = [
        calc.Usage(contract_id, kind, date, quantity)
        for contract_id, kind, date, quantity in ServiceEvent.objects.filter(
            contract__customer=customer, date__range=(period.start, period.end)
        ).values_list("contract_id", "kind", "date", "quantity")
    ]
    rate = tax_rate_for(customer.region, period.end)
    lines = calc.apply_tax(
        calc.compute_lines([contract_terms(c) for c in contracts], usage, period.start, period.end),
        rate,
    )
    return InvoiceDraft(customer, period, lines, calc.totals(lines), rate)


def next_number(series: str, year: int) -> int:
    """The next number of ``series`` in ``year``; call inside the transaction that
    creates the document. The UPDATE takes the row's write lock (PostgreSQL) or the
    database's (SQLite, BEGIN IMMEDIATE) until that transaction ends, so concurrent
    issuers take turns, and a rollback returns the number: no gaps, no duplicates."""
    NumberSequence.objects.bulk_create(
        [NumberSequence(series=series, year=year)], ignore_conflicts=True
    )
    NumberSequence.objects.filter(series=series, year=year).update(last_number=F("last_number") + 1)
    return NumberSequence.objects.get(series=series, year=year).last_number


def issue_invoice(
    customer: Customer,
    period: BillingPeriod,
    *,
    run: BillingRun | None = None,
    today: dt.date | None = None,
) -> tuple[Invoice | None, bool]:
    """Issue the invoice of ``customer`` for ``period``: (invoice, True) when created now,
    (the existing one, False) when it was issued before, (None, False) when there is
    nothing to bill. Creates the invoice, its lines and its number in one transaction."""
    existing = Invoice.objects.filter(customer=customer, period=period).first()
    if existing is not None:
        return existing, False
    draft = draft_invoice(customer, period)
    if not draft.lines:
        return None, False
    issued = today or business_today()
    try:
        with transaction.atomic():
            number = next_number("INV", issued.year)
            invoice = Invoice.objects.create(
                number=f"{issued.year}-{number:06d}",
                customer=customer,
                period=period,
                run=run,
                status=InvoiceStatus.ISSUED,
                issue_date=issued,
                due_date=issued + dt.timedelta(days=customer.payment_terms_days),
                currency=customer.currency,
                tax_region=customer.region,
                subtotal=draft.totals.subtotal,
                tax_total=draft.totals.tax,
                total=draft.totals.total,
                billing_address=customer.billing_address,
            )
            InvoiceLine.objects.bulk_create(
                InvoiceLine(
                    invoice=invoice,
                    position=position,
                    kind=line.kind,
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    net=line.net,
                    tax_rate=line.tax_rate,
                    tax=line.tax,
                    total=line.total,
                )
                for position, line in enumerate(draft.lines, start=1)
            )
    except IntegrityError:
        # Issued by a concurrent job between the check and the insert: that one counts.
        existing = Invoice.objects.filter(customer=customer, period=period).first()
        if existing is None:
            raise
        return existing, False
    log.info(
        "invoice %s issued to %s: %s %s",
        invoice.number,
        customer.code,
        invoice.total,
        invoice.currency,
    )
    return invoice, True


class AlreadyCredited(BillingError):
    """The invoice's credit notes already cover it: another one would credit it twice."""


def credit_invoice(invoice: Invoice, reason: str, today: dt.date | None = None) -> CreditNote:
    """Credit ``invoice`` in full (the invoice itself is not edited); it becomes void
    unless it was paid (a paid one is refunded outside this app). AlreadyCredited, with
    nothing written, when its credit notes already net it to zero or less."""
    issued = today or business_today()
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(id=invoice.id)
        if locked.total > 0 and invoice_balance(locked) <= 0:
            notes = ", ".join(locked.credit_notes.values_list("number", flat=True))
            raise AlreadyCredited(f"invoice {locked.number} is already credited in full ({notes})")
        number = next_number("CN", issued.year)
        note = CreditNote.objects.create(
            number=f"CN-{issued.year}-{number:06d}",
            invoice=locked,
            reason=reason,
            issue_date=issued,
            subtotal=-locked.subtotal,
            tax_total=-locked.tax_total,
            total=-locked.total,
        )
        if locked.status == InvoiceStatus.ISSUED:
            locked.status = InvoiceStatus.VOID
            locked.save(update_fields=["status"])
    return note


def invoice_balance(invoice: Invoice) -> Decimal:
    """The invoice net of its credit notes (whose totals are negative): zero once credited."""
    credited = sum((note.total for note in invoice.credit_notes.all()), calc.ZERO)
    return invoice.total + credited

"""Billing's rows of the demo company (``manage.py seed_demo``): its customers with their
contracts, last month's pickups as service events, and the Dutch VAT rule, so a dry run
or a run of the previous month shows invoices at once; and one invoice of last month
already issued, with its PDF, so the invoice pages are not empty on a fresh start.

Every row is recognisable: customers are flagged ``is_demo`` (codes ``DEMO-C…``),
service events carry ``DEMO-`` external refs, the tax rule is named ``DEMO-VAT-<region>``.
``clear()`` removes exactly them, with the invoices, payments and credit notes billed to
demo customers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from billing import calculation, documents, services
from billing.models import (
    CreditNote,
    Customer,
    EventSource,
    Invoice,
    Payment,
    ServiceContract,
    ServiceEvent,
    TaxRule,
)

ORDER = 10
# The development Stripe fake charges this test card; with a real key, demo customers
# are not meant to be charged at all (seed_demo is a development command).
DEMO_PAYMENT_METHOD = "pm_card_visa"


def _previous_month(today: dt.date) -> tuple[dt.date, dt.date]:
    end = today.replace(day=1) - dt.timedelta(days=1)
    return end.replace(day=1), end


def seed(company: Any) -> dict[str, int]:
    """Create what is missing (a second call creates nothing); returns new rows per model."""
    rule_name = f"DEMO-VAT-{company.tax_region}"
    _, rule_created = TaxRule.objects.get_or_create(
        region=company.tax_region,
        name=rule_name,
        defaults={"rate": company.vat_rate, "valid_from": dt.date(2000, 1, 1)},
    )
    known = set(Customer.objects.filter(is_demo=True).values_list("code", flat=True))
    new_customers = [c for c in company.customers if c.code not in known]
    Customer.objects.bulk_create(
        [
            Customer(
                code=c.code,
                name=c.name,
                email=c.email,
                phone=c.phone,
                billing_address=f"{c.address}\n{c.postcode} {c.city}",
                region=company.tax_region,
                currency=company.currency,
                stripe_payment_method=DEMO_PAYMENT_METHOD,
                is_demo=True,
            )
            for c in new_customers
        ],
        ignore_conflicts=True,
    )
    ids = dict(Customer.objects.filter(is_demo=True).values_list("code", "id"))
    with_contract = set(
        ServiceContract.objects.filter(customer__is_demo=True).values_list(
            "customer__code", flat=True
        )
    )
    contracts = ServiceContract.objects.bulk_create(
        ServiceContract(
            customer_id=ids[c.code],
            plan=c.kind.capitalize(),
            container_size=c.container,
            containers=c.containers,
            base_monthly_fee=c.monthly_fee,
            price_per_pickup=c.price_per_pickup,
            start_date=c.contract_start,
        )
        for c in company.customers
        if c.code in ids and c.code not in with_contract
    )
    contract_of = dict(
        ServiceContract.objects.filter(customer__is_demo=True).values_list("customer__code", "id")
    )
    start, end = _previous_month(company.today)
    events = [
        ServiceEvent(
            contract_id=contract_of[code],
            kind="pickup",
            date=day,
            source=EventSource.ROUTING,
            external_ref=f"DEMO-P-{code}-{day.isoformat()}",
        )
        for code, day in company.pickups(start, end)
        if code in contract_of
    ]
    before = ServiceEvent.objects.filter(external_ref__startswith="DEMO-").count()
    ServiceEvent.objects.bulk_create(events, ignore_conflicts=True, batch_size=1000)
    after = ServiceEvent.objects.filter(external_ref__startswith="DEMO-").count()
    return {
        "TaxRule": int(rule_created),
        "Customer": len(new_customers),
        "ServiceContract": len(contracts),
        "ServiceEvent": after - before,
        "Invoice": _issue_one_invoice(company.today),
    }


def _issue_one_invoice(today: dt.date) -> int:
    """Issue last month's invoice of the first demo customer with one (1), unless a demo
    invoice exists (0). Its PDF is rendered here, not by a job, and it is neither
    charged nor reminded: it shows the pages; a run of the period bills the others, and
    the admin's "Charge again" charges it at the Stripe fake."""
    if Invoice.objects.filter(customer__is_demo=True).exists():
        return 0
    period = services.get_period(calculation.previous_month_label(today))
    for customer in Customer.objects.filter(is_demo=True).order_by("code"):
        invoice, created = services.issue_invoice(customer, period, today=today)
        if invoice is not None and created:
            documents.store(invoice, "invoice")
            return 1
    return 0


def clear() -> dict[str, int]:
    """Delete the demo rows (and what was billed to demo customers); nothing else."""
    invoices = Invoice.objects.filter(customer__is_demo=True)
    steps = [
        ("Payment", Payment.objects.filter(invoice__in=invoices)),
        ("CreditNote", CreditNote.objects.filter(invoice__in=invoices)),
        ("Invoice", invoices),  # with their lines, documents and reminders
        ("ServiceEvent", ServiceEvent.objects.filter(contract__customer__is_demo=True)),
        ("ServiceContract", ServiceContract.objects.filter(customer__is_demo=True)),
        ("Customer", Customer.objects.filter(is_demo=True)),
        ("TaxRule", TaxRule.objects.filter(name__startswith="DEMO-VAT-")),
    ]
    counts = {}
    for name, rows in steps:
        _, per_model = rows.delete()
        counts[name] = per_model.get(f"billing.{name}", 0)
    return counts

"""Billing's demo rows: seeded from the demo company, idempotent, billable, cleared exactly."""

from __future__ import annotations

import datetime as dt

import pytest

from billing import demo, runs
from billing.models import Customer, Document, Invoice, InvoiceStatus, ServiceEvent, TaxRule
from maintenance.demo_company import build_company
from queueing import Job
from tests.billing import factories

TODAY = dt.date(2026, 12, 1)


@pytest.mark.django_db
def test_seed_is_idempotent_billable_and_clear_removes_only_demo_rows():
    company = build_company(TODAY, customers=40)
    mine = factories.customer()
    first = demo.seed(company)
    assert first["Customer"] == first["ServiceContract"] == 40 and first["TaxRule"] == 1
    november = company.pickups(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert first["ServiceEvent"] == len(november) > 100
    # One invoice of last month already issued, with its PDF: the invoice pages show it.
    assert first["Invoice"] == 1
    [shown] = Invoice.objects.all()
    assert shown.customer.is_demo and shown.period.label == "2026-11"
    assert shown.status == InvoiceStatus.ISSUED and shown.issue_date == TODAY
    assert bytes(Document.objects.get(invoice=shown, kind="invoice").content).startswith(b"%PDF-")
    # Neither charged nor reminded: nothing runs against it behind the demo's back.
    assert not Job.objects.filter(task_name__startswith="billing.").exists()
    assert demo.seed(company) == {
        "TaxRule": 0,
        "Customer": 0,
        "ServiceContract": 0,
        "ServiceEvent": 0,
        "Invoice": 0,
    }
    assert TaxRule.objects.get().rate == company.vat_rate
    demo_customer = Customer.objects.get(code=company.customers[0].code)
    assert demo_customer.phone == company.customers[0].phone

    preview = runs.preview("2026-11")
    started = [c for c in company.customers if c.contract_start <= dt.date(2026, 11, 30)]
    assert preview["count"] == len(started) - 1 > 30
    assert preview["invoices"][0]["tax_rate"] == "0.2100"
    other = next(c for c in started if c.code != shown.customer.code)
    runs.bill(Customer.objects.get(code=other.code).id, "2026-11")

    cleared = demo.clear()
    assert cleared["Customer"] == 40 and cleared["Invoice"] == 2
    assert cleared["ServiceEvent"] == len(november)
    assert list(Customer.objects.all()) == [mine] and not ServiceEvent.objects.exists()
    assert not Document.objects.exists()

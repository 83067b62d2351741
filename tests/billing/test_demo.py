"""Billing's demo rows: seeded from the demo company, idempotent, billable, cleared exactly."""

from __future__ import annotations

import datetime as dt

import pytest

from billing import demo, runs
from billing.models import Customer, ServiceEvent, TaxRule
from maintenance.demo_company import build_company
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
    assert demo.seed(company) == {
        "TaxRule": 0,
        "Customer": 0,
        "ServiceContract": 0,
        "ServiceEvent": 0,
    }
    assert TaxRule.objects.get().rate == company.vat_rate

    preview = runs.preview("2026-11")
    started = [c for c in company.customers if c.contract_start <= dt.date(2026, 11, 30)]
    assert preview["count"] == len(started) > 30 and preview["invoices"][0]["tax_rate"] == "0.2100"
    runs.bill(Customer.objects.get(code=started[0].code).id, "2026-11")

    cleared = demo.clear()
    assert cleared["Customer"] == 40 and cleared["Invoice"] == 1
    assert cleared["ServiceEvent"] == len(november)
    assert list(Customer.objects.all()) == [mine] and not ServiceEvent.objects.exists()

"""Billing rows for tests: customers with contracts and events, a tax rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import count

from billing.models import Customer, EventKind, EventSource, ServiceContract, ServiceEvent, TaxRule

_codes = count(1)


def tax_rule(
    region: str = "NL", rate: str = "0.21", since: dt.date = dt.date(2020, 1, 1)
) -> TaxRule:
    return TaxRule.objects.create(
        region=region, name=f"VAT {region}", rate=Decimal(rate), valid_from=since
    )


def customer(**fields) -> Customer:
    number = next(_codes)
    values = {
        "code": f"T-{number:05d}",
        "name": f"Customer {number}",
        "email": f"customer{number}@example.org",
        "region": "NL",
        "currency": "EUR",
        "billing_address": f"Teststraat {number}\n3511 AA Utrecht",
        "stripe_payment_method": "pm_card_visa",
    }
    return Customer.objects.create(**(values | fields))


def contract(owner: Customer, **fields) -> ServiceContract:
    values = {
        "plan": "Household",
        "container_size": "240L",
        "base_monthly_fee": Decimal("12.50"),
        "price_per_pickup": Decimal("6.50"),
        "price_extra_pickup": Decimal("15.00"),
        "price_overweight_per_kg": Decimal("0.35"),
        "start_date": dt.date(2026, 1, 1),
    }
    return ServiceContract.objects.create(customer=owner, **(values | fields))


def pickups(
    on: ServiceContract, days: list[dt.date], kind: str = EventKind.PICKUP, quantity: str = "1"
) -> None:
    ServiceEvent.objects.bulk_create(
        ServiceEvent(
            contract=on, kind=kind, date=day, quantity=Decimal(quantity), source=EventSource.ROUTING
        )
        for day in days
    )


def weekly(start: dt.date, end: dt.date, weekday: int = 1) -> list[dt.date]:
    days = []
    day = start
    while day <= end:
        if day.weekday() == weekday:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def billed_customer(pickup_count_weekday: int = 1) -> Customer:
    """A customer with a contract from before November 2026 and its weekly pickups."""
    owner = customer()
    deal = contract(owner)
    pickups(deal, weekly(dt.date(2026, 11, 1), dt.date(2026, 11, 30), pickup_count_weekday))
    return owner

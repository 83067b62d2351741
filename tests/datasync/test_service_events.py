"""The ``service_events`` target: a CSV of completed pickups and extras imported into
billing, idempotently, with bad rows reported by field, events on an issued invoice never
changed, and the imported events billed by the run."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing import services
from billing.models import EventSource, Invoice, ServiceEvent
from datasync import engine
from datasync.models import (
    ConflictPolicy,
    ConflictStatus,
    RecordError,
    SourceKind,
    SyncConflict,
    SyncSource,
)
from tests.billing import factories

HEADER = "Ref,Customer,Contract,Kind,Date,Quantity\n"
GOOD = (
    "R-1,EV-1,,pickup,2026-11-03,1\n"
    "R-2,EV-1,,extra_pickup,2026-11-10,1\n"
    'R-3,EV-1,,overweight,2026-11-10,"12,5"\n'
    "R-4,EV-2,K-A,pickup,2026-11-04,1\n"
)
BAD = (
    "R-5,NOPE,,pickup,2026-11-03,1\n"  # unknown customer
    "R-6,EV-2,,pickup,2026-11-05,1\n"  # two contracts that day, none named
    "R-7,EV-1,K-A,pickup,2026-11-05,1\n"  # another customer's contract
    "R-8,EV-1,,teleport,2026-11-05,1\n"  # no such kind
    "R-9,EV-1,,pickup,2025-06-02,1\n"  # before the contract started
    "R-10,EV-1,K-ZZ,pickup,2026-11-05,1\n"  # unknown contract code
)
FIELD_MAP = {
    "external_ref": "Ref",
    "customer": {"from": "Customer", "transforms": ["strip", "upper"]},
    "contract": "Contract",
    "kind": {"from": "Kind", "transforms": ["strip", "lower"]},
    "date": "Date",
    "quantity": {"from": "Quantity", "transforms": ["decimal"]},
}


@pytest.fixture
def customers(db):
    factories.tax_rule()
    one = factories.customer(code="EV-1")
    factories.contract(one)  # no code: found by the customer and the date
    two = factories.customer(code="EV-2")
    factories.contract(two, code="K-A", container_size="240L")
    factories.contract(two, code="K-B", container_size="1100L", price_per_pickup=Decimal("19"))
    return one, two


def source(text: str, name: str = "csv-events") -> SyncSource:
    return SyncSource.objects.create(
        name=name,
        kind=SourceKind.CSV,
        target="service_events",
        field_map=FIELD_MAP,
        csv_content=text,
        batch_size=3,
    )


def events() -> dict[str, tuple]:
    return {
        e.external_ref: (e.contract.customer.code, e.kind, e.date.isoformat(), e.quantity)
        for e in ServiceEvent.objects.select_related("contract__customer")
    }


def reasons(run) -> dict[str, dict]:
    return {e.external_id: e.reason for e in RecordError.objects.filter(run=run)}


@pytest.mark.django_db
def test_a_csv_imported_twice_records_each_event_once_and_names_bad_rows(customers):
    csv = source(HEADER + GOOD + BAD)
    first = engine.sync(csv.name, "full")
    assert (first.read, first.created, first.invalid) == (10, 4, 6)
    assert events() == {
        "R-1": ("EV-1", "pickup", "2026-11-03", Decimal("1.000")),
        "R-2": ("EV-1", "extra_pickup", "2026-11-10", Decimal("1.000")),
        "R-3": ("EV-1", "overweight", "2026-11-10", Decimal("12.500")),
        "R-4": ("EV-2", "pickup", "2026-11-04", Decimal("1.000")),
    }
    assert ServiceEvent.objects.get(external_ref="R-4").contract.code == "K-A"
    assert set(ServiceEvent.objects.values_list("source", flat=True)) == {EventSource.IMPORT}
    assert reasons(first) == {
        "R-5": {"customer": ["no customer 'NOPE'"]},
        "R-6": {
            "contract": [
                "customer EV-2 has 2 contracts active on 2026-11-05 (K-A, K-B): "
                "give the contract's code"
            ]
        },
        "R-7": {"contract": ["contract 'K-A' is customer EV-2's, not EV-1's"]},
        "R-8": {"kind": ["Kind: Value 'teleport' is not a valid choice."]},
        "R-9": {"date": ["customer EV-1 has no contract active on 2025-06-02"]},
        "R-10": {"contract": ["no service contract 'K-ZZ'"]},
    }

    again = engine.sync(csv.name, "full")
    assert (again.created, again.updated, again.unchanged, again.invalid) == (0, 0, 4, 6)
    assert ServiceEvent.objects.count() == 4


@pytest.mark.django_db
def test_a_changed_row_updates_an_unbilled_event_but_never_one_on_an_issued_invoice(customers):
    one, _ = customers
    csv = source(HEADER + GOOD)
    engine.sync(csv.name, "full")

    two_pickups = GOOD.replace("R-1,EV-1,,pickup,2026-11-03,1", "R-1,EV-1,,pickup,2026-11-03,2")
    csv.csv_content = HEADER + two_pickups
    csv.save()
    run = engine.sync(csv.name, "full")
    assert (run.updated, run.unchanged, run.invalid) == (1, 3, 0)
    assert ServiceEvent.objects.get(external_ref="R-1").quantity == Decimal("2")

    period = services.get_period("2026-11")
    invoice, created = services.issue_invoice(one, period, today=dt.date(2026, 12, 1))
    assert created
    before = events()

    changed = two_pickups.replace(
        "R-2,EV-1,,extra_pickup,2026-11-10,1", "R-2,EV-1,,extra_pickup,2026-11-10,3"
    )
    late = "R-11,EV-1,,pickup,2026-11-24,1\n"  # its month is invoiced already
    csv.csv_content = HEADER + changed + late
    csv.save()
    refused = engine.sync(csv.name, "full")
    assert (refused.created, refused.updated, refused.unchanged, refused.invalid) == (0, 0, 3, 2)
    assert reasons(refused) == {
        "R-2": {
            "external_ref": [
                f"event R-2 is billed on invoice {invoice.number} (issued), which is never "
                "edited: not changed (credit the invoice to correct it)"
            ]
        },
        "R-11": {
            "date": [
                f"customer EV-1 is already invoiced for 2026-11 ({invoice.number}): an event "
                "on 2026-11-24 would never be billed"
            ]
        },
    }
    assert events() == before
    # The same file again: the same report, still nothing written.
    assert engine.sync(csv.name, "full").invalid == 2
    assert events() == before


@pytest.mark.django_db
def test_the_billing_run_bills_the_imported_events(customers):
    one, two = customers
    engine.sync(source(HEADER + GOOD).name, "full")
    period = services.get_period("2026-11")

    first, _ = services.issue_invoice(one, period, today=dt.date(2026, 12, 1))
    lines = {line.kind: (line.quantity, line.net) for line in first.lines.all()}
    assert lines == {
        "fee": (Decimal("1.000"), Decimal("12.50")),
        "pickup": (Decimal("1.000"), Decimal("6.50")),
        "extra_pickup": (Decimal("1.000"), Decimal("15.00")),
        "overweight": (Decimal("12.500"), Decimal("4.38")),  # 12.5 kg x 0.35, half-up
    }
    assert first.subtotal == Decimal("38.38")

    second, _ = services.issue_invoice(two, period, today=dt.date(2026, 12, 1))
    pickups = [line for line in second.lines.all() if line.kind == "pickup"]
    # The pickup is K-A's (6.50), not the 1100L contract's (19.00).
    assert [(p.quantity, p.unit_price) for p in pickups] == [(Decimal("1.000"), Decimal("6.5"))]
    assert Invoice.objects.count() == 2


@pytest.mark.django_db
def test_a_service_event_source_must_name_the_customer_and_the_date():
    csv = SyncSource(
        name="bad",
        kind=SourceKind.CSV,
        target="service_events",
        field_map={"external_ref": "Ref", "contract": "Contract"},
    )
    assert engine.validate_source(csv) == {
        "field_map": ["service_events rows need customer, date: map them or set config.defaults"]
    }


@pytest.mark.django_db
def test_a_conflict_held_before_the_invoice_cannot_write_the_source_version_after_it(customers):
    _, two = customers
    csv = source(HEADER + GOOD)
    csv.conflict_policy = ConflictPolicy.MANUAL
    csv.save()
    engine.sync(csv.name, "full")
    ServiceEvent.objects.filter(external_ref="R-4").update(quantity=Decimal(3))  # ours
    csv.csv_content = HEADER + GOOD.replace("K-A,pickup,2026-11-04,1", "K-A,pickup,2026-11-04,2")
    csv.save()
    assert engine.sync(csv.name, "full").conflicts == 1
    conflict = SyncConflict.objects.get()

    services.issue_invoice(two, services.get_period("2026-11"), today=dt.date(2026, 12, 1))
    with pytest.raises(engine.SyncError, match="is billed on invoice"):
        engine.resolve(conflict, "source", "boss")
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.OPEN
    assert ServiceEvent.objects.get(external_ref="R-4").quantity == Decimal(3)

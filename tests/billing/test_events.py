"""Completed pickups reported by routing or a driver (billing.events.record_event and
POST /api/v1/queue/billing/events): once per external ref, refused by field, never
changing an issued invoice, and billed by the run."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User

from billing import events, services
from billing.models import EventSource, ServiceEvent
from tests.api.conftest import client_for
from tests.billing import factories
from tests.harness import delete_keys

URL = "/api/v1/queue/billing/events"
NOV_3 = dt.date(2026, 11, 3)


def user(role: str) -> User:
    account = User.objects.create_user(f"{role}-events", password="correct horse battery")
    account.groups.add(Group.objects.get(name=role))
    return account


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:throttle:*", "taskyard:limit:*")


@pytest.fixture
def customer(db):
    factories.tax_rule()
    owner = factories.customer(code="PK-1")
    factories.contract(owner)
    return owner


@pytest.mark.django_db
def test_a_pickup_reported_twice_is_one_event(customer):
    report = {
        "external_ref": "visit:17",
        "customer": "PK-1",
        "day": NOV_3,
        "source": EventSource.ROUTING,
    }
    first, outcome = events.record_event(**report)
    assert outcome == "created"
    again, outcome = events.record_event(**report)
    assert (again.id, outcome) == (first.id, "unchanged")
    moved, outcome = events.record_event(**{**report, "day": dt.date(2026, 11, 4)})
    assert (moved.id, outcome, moved.date) == (first.id, "updated", dt.date(2026, 11, 4))
    assert ServiceEvent.objects.count() == 1


@pytest.mark.django_db
def test_an_event_on_an_issued_invoice_is_refused_and_left_as_it_was(customer):
    events.record_event(external_ref="visit:1", customer="PK-1", day=NOV_3, source="driver")
    invoice, _ = services.issue_invoice(
        customer, services.get_period("2026-11"), today=dt.date(2026, 12, 1)
    )
    with pytest.raises(events.EventBilled, match=f"billed on invoice {invoice.number}"):
        events.record_event(
            external_ref="visit:1", customer="PK-1", day=NOV_3, source="driver", quantity=Decimal(2)
        )
    assert ServiceEvent.objects.get().quantity == Decimal("1")
    # The same report as before is no change: still fine.
    _, outcome = events.record_event(
        external_ref="visit:1", customer="PK-1", day=NOV_3, source="driver"
    )
    assert outcome == "unchanged"


@pytest.mark.django_db
def test_a_driver_reports_a_pickup_over_the_api_and_the_run_bills_it(customer):
    driver = client_for(user("driver"))
    body = {"external_ref": "visit:42", "customer": "PK-1", "date": "2026-11-03"}
    created = driver.post(URL, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json() | {"id": 0} == {
        "id": 0,
        "external_ref": "visit:42",
        "customer": "PK-1",
        "contract": None,
        "date": "2026-11-03",
        "kind": "pickup",
        "quantity": "1.000",
        "source": "driver",
        "outcome": "created",
    }
    again = driver.post(URL, body, format="json")
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")

    invoice, _ = services.issue_invoice(
        customer, services.get_period("2026-11"), today=dt.date(2026, 12, 1)
    )
    assert [(line.kind, line.quantity) for line in invoice.lines.all()] == [
        ("fee", Decimal("1.000")),
        ("pickup", Decimal("1.000")),
    ]
    late = driver.post(URL, {**body, "external_ref": "visit:43"}, format="json")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "conflict"
    assert late.json()["error"]["fields"] == {
        "date": [
            f"customer PK-1 is already invoiced for 2026-11 ({invoice.number}): an event on "
            "2026-11-03 would never be billed"
        ]
    }
    assert ServiceEvent.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer": "NOPE"}, "customer"),
        ({"date": "2025-01-06"}, "date"),
        ({"contract": "K-NONE"}, "contract"),
        ({"kind": "teleport"}, "kind"),
        ({"quantity": "0"}, "quantity"),
        ({"source": "import"}, "source"),
        ({"visit": 17}, "visit"),
    ],
)
def test_a_bad_report_is_a_400_naming_the_field(customer, body, field):
    report = {"external_ref": "visit:9", "customer": "PK-1", "date": "2026-11-03"}
    response = client_for(user("dispatcher")).post(URL, report | body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert not ServiceEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"), [("customer", 403), ("manager", 201), ("admin", 201)]
)
def test_who_may_report_service(customer, role, expected):
    body = {"external_ref": f"visit:{role}", "customer": "PK-1", "date": "2026-11-03"}
    assert client_for(user(role)).post(URL, body, format="json").status_code == expected


@pytest.mark.django_db
def test_in_the_admin_a_billed_event_is_read_only_and_its_month_takes_no_new_one(client, customer):
    client.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    event, _ = events.record_event(
        external_ref="visit:5", customer="PK-1", day=NOV_3, source="driver"
    )
    contract = event.contract
    services.issue_invoice(customer, services.get_period("2026-11"), today=dt.date(2026, 12, 1))

    change = f"/admin/billing/serviceevent/{event.id}/change/"
    edit = {
        "contract": contract.id,
        "kind": "pickup",
        "date": "2026-11-03",
        "quantity": "5",
        "source": "manual",
        "external_ref": "visit:5",
    }
    assert client.post(change, edit).status_code == 403
    assert (
        client.post(f"/admin/billing/serviceevent/{event.id}/delete/", {"post": "yes"}).status_code
        == 403
    )
    added = client.post(
        "/admin/billing/serviceevent/add/",
        {**edit, "external_ref": "office:1", "date": "2026-11-20"},
    )
    assert added.status_code == 200  # the form again, with the reason
    assert "already invoiced for 2026-11" in added.content.decode()
    assert list(ServiceEvent.objects.values_list("external_ref", "quantity")) == [
        ("visit:5", Decimal("1.000"))
    ]
    # December is open: the office may add an event there.
    december = {**edit, "external_ref": "office:2", "date": "2026-12-02"}
    assert client.post("/admin/billing/serviceevent/add/", december).status_code == 302
    assert ServiceEvent.objects.filter(external_ref="office:2", source="manual").exists()

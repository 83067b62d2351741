"""The targets: service points and vehicles with references by code and declared
transformations, retired (not deleted) when the source drops them; bookings settled by
"newest wins"; misdeclared sources named before any run."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from datasync import engine
from datasync.models import ConflictPolicy, RecordError, SourceKind, SyncConflict, SyncSource
from notifications.models import Booking, Recipient
from routing.models import Depot, ServicePoint, Vehicle
from tests.datasync.conftest import BASE, airtable_source

POINTS_CSV = (
    "Code;Customer;Lat;Lon;Depot;Kg;M3;Day;Window from;Window to;Optional\n"
    "SP-1;Bakkerij Jansen;52,0907;5,1214;D-1;25;0,24;Tuesday;08:00;12:00;no\n"
    "SP-2;Café Noor;52.10;5.12;D-1;70;0.66;fri;;;yes\n"
    "SP-3;Nowhere;52.10;5.12;D-9;70;0.66;fri;;;no\n"
    "SP-4;Too far north;95;5.12;D-1;70;0.66;fri;;;no\n"
)
POINTS_MAP = {
    "code": "Code",
    "customer_name": "Customer",
    "lat": {"from": "Lat", "transforms": ["float"]},
    "lon": {"from": "Lon", "transforms": ["float"]},
    "depot": "Depot",
    "demand_kg": {"from": "Kg", "transforms": ["int"]},
    "demand_m3": {"from": "M3", "transforms": ["decimal"]},
    "pickup_weekday": {"from": "Day", "transforms": ["weekday"]},
    "window_start": "Window from",
    "window_end": "Window to",
    "required": {"from": "Optional", "transforms": ["bool"]},
}


@pytest.mark.django_db
def test_service_points_from_csv_with_references_transforms_and_retirement(guard):
    Depot.objects.create(code="D-1", name="Depot", lat=52.1, lon=5.1)
    source = SyncSource.objects.create(
        name="points",
        kind=SourceKind.CSV,
        target="service_points",
        config={"delimiter": ";"},
        field_map=POINTS_MAP,
        csv_content=POINTS_CSV,
    )
    run = engine.sync(source.name, "full")
    assert (run.created, run.invalid) == (2, 2)
    first = ServicePoint.objects.get(code="SP-1")
    assert (first.lat, first.depot.code, first.demand_m3, first.pickup_weekday) == (
        52.0907,
        "D-1",
        Decimal("0.240"),
        1,
    )
    assert (first.window_start, first.window_end) == (dt.time(8), dt.time(12))
    assert first.required is False and ServicePoint.objects.get(code="SP-2").required is True
    reasons = {e.external_id: e.reason for e in RecordError.objects.all()}
    assert reasons["SP-3"] == {"depot": ["no depot 'D-9'"]}
    assert list(reasons["SP-4"]) == ["lat"]

    # Unchanged rows cost nothing; a dropped row is deactivated, not deleted.
    source.csv_content = "\n".join(POINTS_CSV.splitlines()[:2]) + "\n"
    source.save()
    again = engine.sync(source.name, "full")
    assert (again.unchanged, again.updated, again.deleted) == (1, 0, 1)
    assert ServicePoint.objects.get(code="SP-2").active is False
    # Back at the source: active again.
    source.csv_content = POINTS_CSV
    source.save()
    back = engine.sync(source.name, "full")
    assert back.updated == 1 and ServicePoint.objects.get(code="SP-2").active is True


@pytest.mark.django_db
def test_vehicles_need_their_required_fields_mapped_or_defaulted():
    source = SyncSource(
        name="trucks",
        kind=SourceKind.CSV,
        target="vehicles",
        field_map={"code": "Code", "name": "Name", "depot": "Depot", "fleet_colour": "Colour"},
    )
    problems = engine.validate_source(source)
    assert "fleet_colour: not accepted by vehicles" in problems["field_map"][0]
    assert "vehicles rows need capacity_kg, capacity_m3, shift_start, shift_end" in str(problems)
    source.field_map = {"name": "Name"}
    source.outbound_map = {"driver_name": "Driver"}
    problems = engine.validate_source(source)
    assert "map the natural key 'code'" in str(problems["field_map"])
    assert problems["outbound_map"] == [
        "driver_name: our side owns only nothing",
        "a CSV source is read-only",
    ]
    with pytest.raises(engine.SyncError, match="misdeclared"):
        source.save()
        engine.sync("trucks", "full")
    assert not Vehicle.objects.exists()


@pytest.mark.django_db
def test_newest_wins_settles_a_booking_changed_on_both_sides(guard, airtable_fake):
    Recipient.objects.create(kind="customer", ref="R-1", name="Anna")
    when = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    earlier = timezone.now() - dt.timedelta(hours=1)
    ids = airtable_fake.seed(
        BASE,
        "Pickups",
        [
            {"Ref": f"B-{n}", "Customer": "R-1", "When": when.isoformat(), "Where": "Front"}
            for n in range(2)
        ],
        modified=earlier,
    )
    source = airtable_source(
        airtable_fake.url,
        name="pickups",
        target="bookings",
        field_map={
            "ref": "Ref",
            "recipient": "Customer",
            "scheduled_for": "When",
            "location": "Where",
        },
        conflict_policy=ConflictPolicy.NEWEST_WINS,
    )
    source.config = {**source.config, "table": "Pickups"}
    source.save()
    engine.sync(source.name, "full")
    # B-0: ours changed after theirs (theirs an hour old) -> ours stays.
    Booking.objects.filter(ref="B-0").update(location="Gate 2", updated_at=timezone.now())
    airtable_fake.change(
        BASE, "Pickups", ids[0], {"When": (when + dt.timedelta(hours=1)).isoformat()}
    )
    airtable_fake.modified_at[ids[0]] = earlier + dt.timedelta(minutes=1)
    # B-1: theirs changed after ours -> theirs is written.
    Booking.objects.filter(ref="B-1").update(
        location="Gate 3", updated_at=timezone.now() - dt.timedelta(minutes=30)
    )
    airtable_fake.change(
        BASE, "Pickups", ids[1], {"When": (when + dt.timedelta(hours=2)).isoformat()}
    )
    run = engine.sync(source.name, "full")
    assert (run.conflicts, run.updated) == (2, 1)
    kept = Booking.objects.get(ref="B-0")
    assert (kept.scheduled_for, kept.location) == (when, "Gate 2")
    taken = Booking.objects.get(ref="B-1")
    assert (taken.scheduled_for, taken.location) == (when + dt.timedelta(hours=2), "Front")
    assert not SyncConflict.objects.exists()

"""Fixtures of the routing tests: a small depot day in the tables, an inline problem."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from tests.harness import delete_keys

# A Wednesday: the service points below are due on weekday 2.
DAY = dt.date(2026, 12, 2)
UTRECHT = (52.0907, 5.1214)


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:rate:api:*")


@pytest.fixture
def depot_day(db) -> dict[str, Any]:
    """Depot RT-D1, landfill RT-F1, two trucks, ten service points due on DAY (two with
    windows, one on another weekday, one inactive). Today's rounds: S01-S06 on RT-T1,
    the rest on RT-T2."""
    from routing.models import Depot, Facility, ServicePoint, Vehicle

    depot = Depot.objects.create(code="RT-D1", name="Depot", lat=52.10, lon=5.09)
    landfill = Facility.objects.create(
        code="RT-F1", name="Landfill", kind="landfill", lat=52.13, lon=5.19, unload_minutes=10
    )
    trucks = []
    for n, capacity in ((1, 600), (2, 300)):
        truck = Vehicle.objects.create(
            code=f"RT-T{n}",
            name=f"Truck {n}",
            depot=depot,
            driver_name=f"Driver {n}",
            capacity_kg=capacity,
            capacity_m3=Decimal("8"),
            shift_start=dt.time(7),
            shift_end=dt.time(15),
            max_route_minutes=7 * 60,
        )
        truck.reload_facilities.add(landfill)
        trucks.append(truck)
    points = []
    for i in range(12):
        points.append(
            ServicePoint(
                code=f"RT-S{i + 1:02d}",
                customer_name=f"Customer {i + 1}",
                address=f"Straat {i + 1}, Utrecht",
                lat=UTRECHT[0] + 0.004 * (i % 4) - 0.006,
                lon=UTRECHT[1] + 0.006 * (i // 4) - 0.006,
                depot=depot,
                container="240L",
                demand_kg=60,
                demand_m3=Decimal("0.24"),
                service_minutes=2,
                pickup_weekday=DAY.weekday() if i < 10 else (DAY.weekday() + 1) % 7,
                window_start=dt.time(8) if i in (3, 7) else None,
                window_end=dt.time(10) if i in (3, 7) else None,
                current_vehicle=trucks[0] if i < 6 else trucks[1],
                current_sequence=i + 1,
                active=i != 9,
            )
        )
    ServicePoint.objects.bulk_create(points)
    return {"day": DAY.isoformat(), "depot": "RT-D1", "due": [f"RT-S{i:02d}" for i in range(1, 10)]}


def inline_problem(stops: int = 6, demand: int = 50) -> dict[str, Any]:
    """An inline problem as the API takes it."""
    return {
        "dimensions": ["kg"],
        "depots": [{"id": "D", "lat": 52.10, "lon": 5.09}],
        "facilities": [{"id": "F", "lat": 52.13, "lon": 5.19, "unload_minutes": 10}],
        "stops": [
            {
                "id": f"S{i}",
                "lat": UTRECHT[0] + 0.003 * i,
                "lon": UTRECHT[1] - 0.002 * i,
                "demand": [demand],
                "service_minutes": 3,
            }
            for i in range(stops)
        ],
        "vehicles": [
            {
                "id": "V1",
                "depot": "D",
                "capacity": [200],
                "shift_start": "07:00",
                "shift_end": "12:00",
                "cost_per_km": "1.20",
                "cost_per_hour": "38.00",
                "reload_facilities": ["F"],
            }
        ],
    }

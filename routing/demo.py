"""Routing's rows of the demo company (manage.py seed_demo): depots, the landfill, the
ten trucks and one service point per customer, all with codes starting "DEMO-" and
is_demo=True. The first seed also asks for tomorrow's plan of each depot (two jobs on
the routing queue), so the admin shows a run with its map as soon as a worker runs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q

from routing.matrices import haversine_m
from routing.models import Depot, Facility, OptimizationRun, ServicePoint, Vehicle

ORDER = 20  # billing 10, routing 20, notifications 30, datasync 40
# Demo trucks may unload at most this often a day (a landfill run takes ~40 min).
DEMO_MAX_RELOADS = 3
DEMO_ROUTE_MINUTES = 8 * 60
# The first seed plans the next day with pickups, with this solver time per depot.
DEMO_PLAN_SECONDS = 10.0


def seed(company: Any) -> dict[str, int]:
    """Create the missing demo rows (a second call creates nothing); counts per model."""
    counts = {"Depot": 0, "Facility": 0, "Vehicle": 0, "ServicePoint": 0}
    with transaction.atomic():
        depots = {
            d.code: d for d in Depot.objects.filter(code__in=[p.code for p in company.depots])
        }
        for place in company.depots:
            if place.code not in depots:
                depots[place.code] = Depot.objects.create(
                    code=place.code,
                    name=place.name,
                    address=place.address,
                    lat=place.lat,
                    lon=place.lon,
                    is_demo=True,
                )
                counts["Depot"] += 1
        facilities = {
            f.code: f
            for f in Facility.objects.filter(code__in=[p.code for p in company.facilities])
        }
        for place in company.facilities:
            if place.code not in facilities:
                facilities[place.code] = Facility.objects.create(
                    code=place.code,
                    name=place.name,
                    address=place.address,
                    lat=place.lat,
                    lon=place.lon,
                    kind="landfill" if place.kind == "landfill" else "transfer",
                    unload_minutes=20,
                    opens=dt.time(6),
                    closes=dt.time(17),
                    is_demo=True,
                )
                counts["Facility"] += 1
        existing = set(
            Vehicle.objects.filter(code__startswith="DEMO-").values_list("code", flat=True)
        )
        new_trucks = [
            Vehicle(
                code=t.code,
                name=t.name,
                depot=depots[t.depot_code],
                driver_name=t.driver_name,
                driver_phone=t.driver_phone,
                capacity_kg=t.capacity_kg,
                capacity_m3=Decimal(str(t.capacity_m3)),
                shift_start=t.shift_start,
                shift_end=t.shift_end,
                max_route_minutes=DEMO_ROUTE_MINUTES,
                cost_per_km=t.cost_per_km,
                cost_per_hour=t.cost_per_hour,
                max_reloads=DEMO_MAX_RELOADS,
                is_demo=True,
            )
            for t in company.trucks
            if t.code not in existing
        ]
        Vehicle.objects.bulk_create(new_trucks)
        created = Vehicle.objects.filter(code__in=[t.code for t in new_trucks])
        through = Vehicle.reload_facilities.through
        through.objects.bulk_create(
            through(vehicle_id=truck.pk, facility_id=facility.pk)
            for truck in created
            for facility in facilities.values()
        )
        counts["Vehicle"] = len(new_trucks)
        existing = set(
            ServicePoint.objects.filter(code__startswith="DEMO-").values_list("code", flat=True)
        )
        places = list(depots.values())
        new_points = [
            ServicePoint(
                code=c.code,
                customer_ref=c.code,
                customer_name=c.name,
                address=f"{c.address}, {c.postcode} {c.city}",
                lat=c.lat,
                lon=c.lon,
                depot=nearest(places, c.lat, c.lon),
                container=c.container,
                containers=c.containers,
                demand_kg=c.demand_kg,
                demand_m3=Decimal(str(c.demand_m3)),
                service_minutes=c.service_minutes,
                window_start=c.window[0] if c.window else None,
                window_end=c.window[1] if c.window else None,
                pickup_weekday=c.pickup_weekday,
                prize=c.price_per_pickup,
                is_demo=True,
            )
            for c in company.customers
            if c.code not in existing
        ]
        assign_current_rounds(new_points)
        ServicePoint.objects.bulk_create(new_points, batch_size=500)
        counts["ServicePoint"] = len(new_points)
        if counts["ServicePoint"]:
            _plan_next_day(company.today)
    return counts


def clear() -> dict[str, int]:
    """Delete exactly the demo rows (and the runs planned on demo depots)."""
    demo_depots = Q(depot__is_demo=True) | Q(is_demo=True)
    with transaction.atomic():
        runs = (
            OptimizationRun.objects.filter(demo_depots)
            .delete()[1]
            .get("routing.OptimizationRun", 0)
        )
        counts = {
            "OptimizationRun": runs,
            "Vehicle": Vehicle.objects.filter(is_demo=True).delete()[1].get("routing.Vehicle", 0),
            "ServicePoint": ServicePoint.objects.filter(is_demo=True).delete()[0],
            "Facility": Facility.objects.filter(is_demo=True)
            .delete()[1]
            .get("routing.Facility", 0),
            "Depot": Depot.objects.filter(is_demo=True).delete()[0],
        }
    return counts


def assign_current_rounds(points: list[ServicePoint]) -> None:
    """Today's manual rounds, for the "current order" baseline: per depot and pickup
    weekday, the points swept clockwise around the depot and cut into one round per
    truck of that depot, in proportion to the trucks' capacities (how rounds drawn on a
    map by hand tend to look)."""
    groups: dict[tuple[Depot, int | None], list[ServicePoint]] = defaultdict(list)
    for p in points:
        if p.depot is not None:
            groups[p.depot, p.pickup_weekday].append(p)
    trucks: dict[int, list[Vehicle]] = defaultdict(list)
    for truck in Vehicle.objects.filter(active=True, is_demo=True).order_by("code"):
        trucks[truck.depot_id].append(truck)
    for (depot, _), members in groups.items():
        fleet = trucks.get(depot.pk)
        if not fleet:
            continue
        members.sort(key=lambda p: math.atan2(p.lon - depot.lon, p.lat - depot.lat))
        total = sum(t.capacity_kg for t in fleet)
        start = carried = 0
        for truck in fleet:
            carried += truck.capacity_kg
            end = round(len(members) * carried / total)
            for sequence, p in enumerate(members[start:end], 1):
                p.current_vehicle = truck
                p.current_sequence = sequence
            start = end


def nearest(depots: list[Depot], lat: float, lon: float) -> Depot:
    """The depot closest to (lat, lon) as the crow flies: the one that serves it."""
    return min(depots, key=lambda d: haversine_m((d.lat, d.lon), (lat, lon)))


def _plan_next_day(today: dt.date) -> None:
    """Ask for the first day after `today` with pickups, per demo depot (runs after commit)."""
    from routing.tasks import optimize_routes

    weekdays = set(
        ServicePoint.objects.filter(is_demo=True).values_list("pickup_weekday", flat=True)
    )
    day = today + dt.timedelta(days=1)
    while day.weekday() not in weekdays and day < today + dt.timedelta(days=8):
        day += dt.timedelta(days=1)
    for depot in Depot.objects.filter(is_demo=True).order_by("code"):
        optimize_routes.delay(day=day.isoformat(), depot=depot.code, time_limit=DEMO_PLAN_SECONDS)

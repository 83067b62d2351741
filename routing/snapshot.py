"""The input snapshot of a run: what was planned, frozen as JSON, and its hash.

A run's input is normalised into one JSON shape whatever its source (a day + depot read
from the tables, or an inline problem from the API), stored on the run, hashed for the
result cache, and turned into the solver's `Problem` with travel matrices. Shape:

    {"dimensions": [...], "depots": [{"id", "lat", "lon"}],
     "facilities": [{"id", "lat", "lon", "service_s", "open_s", "close_s"}],
     "stops": [{"id", "lat", "lon", "demand": [...], "service_s", "window": [s, e] | null,
                "required", "prize"}],
     "vehicles": [{"id", "start", "end", "capacity": [...], "shift": [s, e],
                   "max_duration_s", "cost_per_km", "cost_per_hour", "reloads": [...],
                   "max_reloads"}],
     "current": {vehicle id: [stop ids in today's order]} | {}}

Times are seconds since midnight of the plan's day, money is a decimal string.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from routing.matrices import SPEED_PROFILE, apply_traffic, offline_matrix, traffic_factor
from routing.solver import COST_UNIT, Depot, Facility, Problem, Stop, Vehicle
from routing.solver.problem import money_per_metre, money_per_second

DAY = 24 * 3600
LITRES_PER_M3 = 1000


def seconds(value: str | dt.time | None, default: int) -> int:
    """Seconds since midnight of "HH:MM[:SS]" or a time; `default` for None."""
    if value is None:
        return default
    t = value if isinstance(value, dt.time) else dt.time.fromisoformat(value)
    return t.hour * 3600 + t.minute * 60 + t.second


def input_hash(snapshot: dict[str, Any], parameters: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what determines the plan."""
    canonical = json.dumps(
        {"input": snapshot, "parameters": parameters}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_inline(problem: dict[str, Any]) -> dict[str, Any]:
    """The snapshot of an inline problem (already validated by the contract)."""
    return {
        "dimensions": list(problem["dimensions"]),
        "depots": [{"id": d["id"], "lat": d["lat"], "lon": d["lon"]} for d in problem["depots"]],
        "facilities": [
            {
                "id": f["id"],
                "lat": f["lat"],
                "lon": f["lon"],
                "service_s": int(f.get("unload_minutes", 15)) * 60,
                "open_s": seconds(f.get("opens"), 0),
                "close_s": seconds(f.get("closes"), DAY),
            }
            for f in problem.get("facilities", [])
        ],
        "stops": [
            {
                "id": s["id"],
                "lat": s["lat"],
                "lon": s["lon"],
                "demand": [int(x) for x in s["demand"]],
                "service_s": int(s.get("service_minutes", 2)) * 60,
                "window": [seconds(w, 0) for w in s["window"]] if s.get("window") else None,
                "required": bool(s.get("required", True)),
                "prize": str(Decimal(str(s.get("prize", "0")))),
            }
            for s in problem["stops"]
        ],
        "vehicles": [
            {
                "id": v["id"],
                "start": v["depot"],
                "end": v.get("end_depot") or v["depot"],
                "capacity": [int(x) for x in v["capacity"]],
                "shift": [seconds(v["shift_start"], 0), seconds(v["shift_end"], DAY)],
                "max_duration_s": v["max_route_minutes"] * 60
                if v.get("max_route_minutes")
                else None,
                "cost_per_km": str(Decimal(str(v.get("cost_per_km", "1")))),
                "cost_per_hour": str(Decimal(str(v.get("cost_per_hour", "0")))),
                "reloads": list(v.get("reload_facilities", [])),
                "max_reloads": v.get("max_reloads"),
            }
            for v in problem["vehicles"]
        ],
        "current": {},
    }


def from_tables(day: dt.date, depot_code: str) -> dict[str, Any]:
    """The snapshot of a depot's day: its active vehicles, its service points due on the
    day's weekday, and the facilities those vehicles may unload at."""
    from routing.models import Depot as DepotRow
    from routing.models import ServicePoint
    from routing.models import Vehicle as VehicleRow

    depot = DepotRow.objects.get(code=depot_code)
    vehicles = list(
        VehicleRow.objects.filter(depot=depot, active=True)
        .select_related("depot", "end_depot")
        .prefetch_related("reload_facilities")
        .order_by("code")
    )
    points = list(
        ServicePoint.objects.filter(
            depot=depot, active=True, pickup_weekday=day.weekday()
        ).order_by("code")
    )
    facilities = {f.code: f for v in vehicles for f in v.reload_facilities.all()}
    depots = {depot.code: depot}
    depots.update({v.end_depot.code: v.end_depot for v in vehicles if v.end_depot})
    current = current_rounds(points, vehicles)
    return {
        "dimensions": ["kg", "litres"],
        "depots": [{"id": d.code, "lat": d.lat, "lon": d.lon} for d in depots.values()],
        "facilities": [
            {
                "id": f.code,
                "lat": f.lat,
                "lon": f.lon,
                "service_s": f.unload_minutes * 60,
                "open_s": seconds(f.opens, 0),
                "close_s": seconds(f.closes, DAY),
            }
            for f in sorted(facilities.values(), key=lambda f: f.code)
        ],
        "stops": [
            {
                "id": p.code,
                "lat": p.lat,
                "lon": p.lon,
                "demand": [p.demand_kg, int(p.demand_m3 * LITRES_PER_M3)],
                "service_s": p.service_minutes * 60,
                # Both ends or neither (the model's constraint).
                "window": [seconds(p.window_start, 0), seconds(p.window_end, DAY)]
                if p.window_start is not None and p.window_end is not None
                else None,
                "required": p.required,
                "prize": str(p.prize),
            }
            for p in points
        ],
        "vehicles": [
            {
                "id": v.code,
                "start": v.depot.code,
                "end": (v.end_depot or v.depot).code,
                "capacity": [v.capacity_kg, int(v.capacity_m3 * LITRES_PER_M3)],
                "shift": [seconds(v.shift_start, 0), seconds(v.shift_end, DAY)],
                "max_duration_s": v.max_route_minutes * 60 if v.max_route_minutes else None,
                "cost_per_km": str(v.cost_per_km),
                "cost_per_hour": str(v.cost_per_hour),
                "reloads": sorted(f.code for f in v.reload_facilities.all()),
                "max_reloads": v.max_reloads,
            }
            for v in vehicles
        ],
        "current": current,
    }


def current_rounds(points: list[Any], vehicles: list[Any]) -> dict[str, list[str]]:
    """Today's rounds among `points`: per planned truck (in code order), its points in
    their `current_sequence` order. Points in no round, or in the round of a truck that
    is not planned (inactive, another depot), are left out: `compare_with` then finds
    the rounds incomplete and says so."""
    planned = {v.pk: v.code for v in vehicles}
    rounds: dict[str, list[Any]] = {code: [] for code in planned.values()}
    for p in points:
        if p.current_vehicle_id in planned and p.current_sequence is not None:
            rounds[planned[p.current_vehicle_id]].append(p)
    return {
        code: [p.code for p in sorted(members, key=lambda p: (p.current_sequence, p.code))]
        for code, members in rounds.items()
        if members
    }


def points_of(snapshot: dict[str, Any]) -> list[tuple[float, float]]:
    """(lat, lon) per location, in the order of the problem's matrices."""
    return [
        (item["lat"], item["lon"])
        for kind in ("depots", "facilities", "stops")
        for item in snapshot[kind]
    ]


def shift_span(snapshot: dict[str, Any]) -> tuple[int, int]:
    shifts = [v["shift"] for v in snapshot["vehicles"]] or [[0, DAY]]
    return min(s[0] for s in shifts), max(s[1] for s in shifts)


def to_problem(
    snapshot: dict[str, Any], matrix: tuple[list[list[int]], list[list[int]]] | None = None
) -> Problem:
    """The solver's problem; `matrix` is (distance m, free-flow duration s) from a
    provider, else the offline estimate. Durations get the shift's traffic factor."""
    points = points_of(snapshot)
    traffic = traffic_factor(*shift_span(snapshot))
    if matrix is None:
        distance, duration = offline_matrix(points, traffic=traffic)
    else:
        distance, duration = matrix[0], apply_traffic(matrix[1], traffic)
    n_depots, n_facilities = len(snapshot["depots"]), len(snapshot["facilities"])
    return Problem(
        depots=tuple(Depot(d["id"], i) for i, d in enumerate(snapshot["depots"])),
        facilities=tuple(
            Facility(f["id"], n_depots + i, f["service_s"], f["open_s"], f["close_s"])
            for i, f in enumerate(snapshot["facilities"])
        ),
        stops=tuple(
            Stop(
                s["id"],
                n_depots + n_facilities + i,
                tuple(s["demand"]),
                s["service_s"],
                tuple(s["window"]) if s["window"] else None,
                s["required"],
                int(Decimal(s["prize"]) * COST_UNIT),
            )
            for i, s in enumerate(snapshot["stops"])
        ),
        vehicles=tuple(
            Vehicle(
                v["id"],
                v["start"],
                v["end"],
                tuple(v["capacity"]),
                shift_start=v["shift"][0],
                shift_end=v["shift"][1],
                max_duration=v["max_duration_s"],
                cost_per_distance=money_per_metre(Decimal(v["cost_per_km"])),
                cost_per_duration=money_per_second(Decimal(v["cost_per_hour"])),
                reload_facilities=tuple(v["reloads"]),
                max_reloads=v["max_reloads"],
            )
            for v in snapshot["vehicles"]
        ),
        distance=tuple(map(tuple, distance)),
        duration=tuple(map(tuple, duration)),
        dimensions=tuple(snapshot["dimensions"]),
        coords=tuple((lon, lat) for lat, lon in points),
        name="run",
        # The matrices carry the shift's mean factor; the final schedule is re-timed per
        # departure hour with the profile relative to that mean.
        hourly_factor=tuple(factor / traffic for factor in SPEED_PROFILE),
    )

"""A generated waste-collection instance shaped like a real day (benchmark and tests).

Service points scattered around Utrecht, two depots, a landfill as reload facility,
trucks with kg and litre capacities, morning/afternoon windows for businesses, offline
travel matrices. Deterministic for a seed.
"""

from __future__ import annotations

import random
from decimal import Decimal

from routing.matrices import offline_matrix, traffic_factor
from routing.solver import Depot, Facility, Problem, Stop, Vehicle
from routing.solver.problem import money_per_metre, money_per_second

CENTRE = (52.0907, 5.1214)  # Utrecht
DEPOTS = {"D1": (52.1100, 5.0800), "D2": (52.0600, 5.1700)}
LANDFILL = ("F1", (52.1300, 5.1900))
HOUR = 3600


def collection_problem(stops: int = 300, trucks: int = 10, seed: int = 0) -> Problem:
    rng = random.Random(seed)
    points: list[tuple[float, float]] = [*DEPOTS.values(), LANDFILL[1]]
    stop_rows = []
    for i in range(stops):
        lat = CENTRE[0] + rng.uniform(-0.05, 0.05)
        lon = CENTRE[1] + rng.uniform(-0.08, 0.08)
        points.append((lat, lon))
        business = rng.random() < 0.25
        if business:
            containers = rng.randint(1, 3)
            kg, litres, service = 90 * containers, 1100 * containers, 180 + 60 * containers
            window = rng.choice(
                [(7 * HOUR, 10 * HOUR), (10 * HOUR, 13 * HOUR), (12 * HOUR, 15 * HOUR), None]
            )
        else:
            kg, litres, service, window = rng.randint(12, 35), 240, 60, None
        stop_rows.append((f"S{i + 1:03d}", 3 + i, (kg, litres), service, window))
    shift = (7 * HOUR, 15 * HOUR + 1800)
    distance, duration = offline_matrix(points, traffic=traffic_factor(*shift))
    return Problem(
        depots=tuple(Depot(code, i) for i, code in enumerate(DEPOTS)),
        facilities=(Facility(LANDFILL[0], 2, service=15 * 60, open=6 * HOUR, close=17 * HOUR),),
        stops=tuple(
            Stop(code, loc, demand, service, window)
            for code, loc, demand, service, window in stop_rows
        ),
        vehicles=tuple(
            Vehicle(
                f"T{k + 1:02d}",
                start_depot=list(DEPOTS)[k % 2],
                end_depot=list(DEPOTS)[k % 2],
                capacity=(1500, 16_000) if k % 3 else (2000, 22_000),  # a mixed fleet
                shift_start=shift[0],
                shift_end=shift[1],
                max_duration=8 * HOUR,
                cost_per_distance=money_per_metre(Decimal("1.20")),
                cost_per_duration=money_per_second(Decimal("38.00")),
                reload_facilities=(LANDFILL[0],),
                max_reloads=3,
            )
            for k in range(trucks)
        ),
        distance=tuple(map(tuple, distance)),
        duration=tuple(map(tuple, duration)),
        dimensions=("kg", "litres"),
        name=f"collection-{stops}",
        coords=tuple((lon, lat) for lat, lon in points),
    )

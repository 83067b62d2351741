"""Travel matrices between (lat, lon) points: offline estimate, or a road-network provider.

Offline (the default, no network): great-circle distance x a detour factor, driven at
an average speed that depends on the trip's road class (short hops are residential
streets, long ones arterials/ring roads). Traffic: every duration is multiplied by the
time-of-day factor averaged over the hours the vehicles are on the road
(`traffic_factor`). PyVRP needs one static matrix per profile, so the search uses the
factor of its shift; the final schedule is then re-timed per departure hour with
`SPEED_PROFILE` (routing.solver.check.retime_plan), see docs/routing.md. The OSRM
`/table` provider lives in `routing.osrm`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)

# Roads are not straight lines: in Dutch towns the road distance averages ~1.3x the
# great-circle distance (circuity studies: 1.2-1.4 in European cities).
DETOUR_FACTOR = 1.3


@dataclass(frozen=True)
class RoadClass:
    name: str
    up_to_m: float  # great-circle distances up to this use this class
    speed_kmh: float  # average speed of a refuse truck, stops at junctions included


# A refuse truck's averages: residential streets, town roads, regional roads.
ROAD_CLASSES = (
    RoadClass("residential", 1_500, 20.0),
    RoadClass("urban", 8_000, 35.0),
    RoadClass("regional", math.inf, 60.0),
)

# Multiplier on free-flow durations by hour of day (0-23): morning and evening peaks.
# A documented default shaped like Dutch urban congestion (TomTom traffic index curves);
# replace it with a provider's traffic data where one is configured.
SPEED_PROFILE = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0,  # 00-05
    1.1, 1.35, 1.45, 1.25, 1.1, 1.1,  # 06-11
    1.15, 1.1, 1.1, 1.2, 1.4, 1.45,  # 12-17
    1.25, 1.1, 1.0, 1.0, 1.0, 1.0,  # 18-23
)  # fmt: skip


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def road_class(great_circle_m: float) -> RoadClass:
    return next(rc for rc in ROAD_CLASSES if great_circle_m <= rc.up_to_m)


def traffic_factor(start_second: int, end_second: int) -> float:
    """The speed profile's mean multiplier over [start, end) seconds since midnight."""
    start_h = max(0, start_second // 3600)
    end_h = min(24, max(start_h + 1, math.ceil(end_second / 3600)))
    hours = [SPEED_PROFILE[h % 24] for h in range(start_h, end_h)]
    return sum(hours) / len(hours)


def offline_matrix(
    points: Sequence[tuple[float, float]], traffic: float = 1.0
) -> tuple[list[list[int]], list[list[int]]]:
    """(distance in metres, duration in seconds) between every pair of (lat, lon) points."""
    n = len(points)
    distance = [[0] * n for _ in range(n)]
    duration = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            gc = haversine_m(points[i], points[j])
            metres = gc * DETOUR_FACTOR
            distance[i][j] = round(metres)
            duration[i][j] = round(metres / (road_class(gc).speed_kmh / 3.6) * traffic)
    return distance, duration


def apply_traffic(duration: Sequence[Sequence[int]], traffic: float) -> list[list[int]]:
    """Free-flow durations (e.g. from a provider without traffic) scaled by a factor."""
    return [[round(d * traffic) for d in row] for row in duration]

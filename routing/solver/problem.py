"""The routing problem and its plan as plain data: what the solver adapter takes and returns.

Nothing here knows PyVRP or Django. Units are integers chosen by the caller and used
consistently: distances (metres for real plans, scaled units for benchmark files),
times in seconds since midnight of the plan's day (or scaled units), costs in
`COST_UNIT`s. `docs/routing.md` describes each constraint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# One cost unit is 1/100,000 of the currency: cost per metre and per second stay integers
# (PyVRP's objective is integral) without losing precision (1.20 EUR/km = 120 per metre).
COST_UNIT = 100_000

# "No limit" for times and durations: a day in seconds is far below it and sums stay
# well inside int64.
UNBOUNDED = 2**40


def money_per_metre(per_km: Decimal) -> int:
    """A price per km as cost units per metre."""
    return int((per_km * COST_UNIT / 1000).to_integral_value())


def money_per_second(per_hour: Decimal) -> int:
    """A price per hour as cost units per second."""
    return int((per_hour * COST_UNIT / 3600).to_integral_value())


@dataclass(frozen=True)
class Depot:
    """Where vehicles start and end. `location` indexes the problem's matrices."""

    id: str
    location: int
    open: int = 0
    close: int = UNBOUNDED


@dataclass(frozen=True)
class Facility:
    """A reload point (landfill, transfer station): a visit empties the vehicle."""

    id: str
    location: int
    service: int = 0  # unloading time
    open: int = 0
    close: int = UNBOUNDED


@dataclass(frozen=True)
class Stop:
    """A service point to visit once. `demand` has one amount per load dimension.

    `window` is (earliest, latest) start of service. An optional stop (`required=False`)
    may be left out at the cost of its `prize`.
    """

    id: str
    location: int
    demand: tuple[int, ...]
    service: int = 0
    window: tuple[int, int] | None = None
    required: bool = True
    prize: int = 0


@dataclass(frozen=True)
class Vehicle:
    """One vehicle and its shift. `capacity` has one amount per load dimension."""

    id: str
    start_depot: str
    end_depot: str
    capacity: tuple[int, ...]
    shift_start: int = 0
    shift_end: int = UNBOUNDED
    max_duration: int | None = None
    cost_per_distance: int = 1
    cost_per_duration: int = 0
    fixed_cost: int = 0
    reload_facilities: tuple[str, ...] = ()
    max_reloads: int | None = None


@dataclass(frozen=True)
class Problem:
    """A complete instance: places, vehicles and the travel matrices between locations.

    `distance[i][j]` and `duration[i][j]` go from location i to location j; every
    depot, facility and stop names its location index.
    """

    depots: tuple[Depot, ...]
    facilities: tuple[Facility, ...]
    stops: tuple[Stop, ...]
    vehicles: tuple[Vehicle, ...]
    distance: tuple[tuple[int, ...], ...]
    duration: tuple[tuple[int, ...], ...]
    dimensions: tuple[str, ...] = ("load",)
    name: str = ""
    # Optional (x, y) per location: lon/lat or a benchmark's plane; only for drawings and
    # the solver's neighbourhood tie-breaks, never for distances.
    coords: tuple[tuple[float, float], ...] = ()
    # Optional: 24 multipliers, one per hour of the day, on `duration` for a leg that
    # starts in that hour (traffic). The search uses `duration` as it is; the final
    # schedule is re-timed with these (times must then be seconds since midnight).
    hourly_factor: tuple[float, ...] = ()

    def depot(self, depot_id: str) -> Depot:
        return next(d for d in self.depots if d.id == depot_id)

    def facility(self, facility_id: str) -> Facility:
        return next(f for f in self.facilities if f.id == facility_id)

    def stop(self, stop_id: str) -> Stop:
        return next(s for s in self.stops if s.id == stop_id)


@dataclass(frozen=True)
class Visit:
    """One step of a route: a stop's service or a reload at a facility."""

    kind: str  # "stop" | "reload"
    id: str
    arrival: int
    start: int  # start of service (after waiting for the window)
    departure: int
    load_on_arrival: tuple[int, ...]


@dataclass(frozen=True)
class RoutePlan:
    vehicle_id: str
    visits: tuple[Visit, ...]
    start: int
    end: int
    distance: int
    duration: int

    @property
    def stop_ids(self) -> list[str]:
        return [v.id for v in self.visits if v.kind == "stop"]

    @property
    def reloads(self) -> int:
        return sum(1 for v in self.visits if v.kind == "reload")


@dataclass(frozen=True)
class Plan:
    """A checked solution: routes (vehicles without work have none), dropped optional stops."""

    routes: tuple[RoutePlan, ...]
    dropped: tuple[str, ...]
    cost: int
    distance: int
    duration: int
    feasible: bool
    stats: dict[str, object] = field(default_factory=dict)

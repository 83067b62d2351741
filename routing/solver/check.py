"""Our own feasibility check of a plan, independent of the solver.

Every plan the adapter returns is re-simulated here from the problem alone (matrices,
windows, capacities, shifts, reloads): the schedule we show users (ETAs, loads) comes
from this simulation, not from the solver's internals, so a solver bug or a wrong
translation of a constraint is caught instead of being shipped as a plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from routing.solver.problem import Problem, RoutePlan, Vehicle, Visit

# A route as the solver or a user gives it: the vehicle and its steps in order, each
# ("stop", stop id) or ("reload", facility id).
Step = tuple[str, str]


@dataclass(frozen=True)
class Violation:
    """One broken constraint, naming the vehicle and the stops concerned."""

    constraint: str  # capacity | time_window | shift | max_duration | reload | coverage
    vehicle_id: str | None
    stop_ids: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        who = f"vehicle {self.vehicle_id}: " if self.vehicle_id else ""
        stops = f" (stops {', '.join(self.stop_ids)})" if self.stop_ids else ""
        return f"{self.constraint}: {who}{self.detail}{stops}"


def simulate_route(
    problem: Problem, vehicle: Vehicle, steps: Sequence[Step]
) -> tuple[RoutePlan, list[Violation]]:
    """Schedule one route as early as its windows allow, starting as late as helps.

    The vehicle leaves its depot at the latest time that does not delay the return (so
    no avoidable waiting counts towards the shift's duration), waits for windows, and
    unloads at facilities. Returns the schedule and every constraint it breaks.
    """
    violations: list[Violation] = []
    start_depot = problem.depot(vehicle.start_depot)
    end_depot = problem.depot(vehicle.end_depot)
    dims = len(vehicle.capacity)
    places = _resolve(problem, vehicle, steps, violations)

    earliest_start = max(vehicle.shift_start, start_depot.open)
    arrival_end, _ = _forward(
        problem, start_depot.location, end_depot.location, places, earliest_start
    )
    # Backward pass: the latest time each service may start without delaying the return.
    latest = arrival_end
    loc = end_depot.location
    for place in reversed(places):
        latest = min(place.late, latest - problem.duration[place.location][loc] - place.service)
        loc = place.location
    latest_departure = latest - problem.duration[start_depot.location][loc]
    departure = max(earliest_start, min(latest_departure, vehicle.shift_end, start_depot.close))
    arrival_end, visits_times = _forward(
        problem, start_depot.location, end_depot.location, places, departure
    )

    visits: list[Visit] = []
    load = [0] * dims
    trip_stops: list[str] = []
    prev = start_depot.location
    distance = 0
    for place, (arrival, begin) in zip(places, visits_times, strict=True):
        distance += problem.distance[prev][place.location]
        prev = place.location
        visits.append(
            Visit(place.kind, place.id, arrival, begin, begin + place.service, tuple(load))
        )
        if begin > place.late:
            violations.append(
                Violation(
                    "time_window",
                    vehicle.id,
                    (place.id,) if place.kind == "stop" else (),
                    f"{place.kind} {place.id} reached at {arrival}, window closes at {place.late}",
                )
            )
        if place.kind == "reload":
            _check_load(vehicle, load, trip_stops, violations)
            load = [0] * dims
            trip_stops = []
        else:
            load = [a + b for a, b in zip(load, place.demand, strict=True)]
            trip_stops.append(place.id)
    _check_load(vehicle, load, trip_stops, violations)
    distance += problem.distance[prev][end_depot.location]

    route = RoutePlan(
        vehicle.id, tuple(visits), departure, arrival_end, distance, arrival_end - departure
    )
    violations.extend(_shift_violations(problem, vehicle, route))
    return route, violations


def retime_plan(
    problem: Problem, routes: Sequence[RoutePlan]
) -> tuple[list[RoutePlan], list[Violation]]:
    """The routes re-timed with each leg's duration for the hour it starts in
    (`problem.hourly_factor`), same stops, same order, same departures; and the windows,
    shifts and maximum durations that this timing breaks. Unchanged when the problem
    has no hourly factors."""
    if not problem.hourly_factor:
        return list(routes), []
    vehicles = {v.id: v for v in problem.vehicles}
    timed: list[RoutePlan] = []
    violations: list[Violation] = []
    for route in routes:
        vehicle = vehicles[route.vehicle_id]
        steps = [(v.kind, v.id) for v in route.visits]
        places = _resolve(problem, vehicle, steps, [])
        arrival_end, times = _forward(
            problem,
            problem.depot(vehicle.start_depot).location,
            problem.depot(vehicle.end_depot).location,
            places,
            route.start,
            problem.hourly_factor,
        )
        visits = []
        for visit, place, (arrival, begin) in zip(route.visits, places, times, strict=True):
            visits.append(
                replace(visit, arrival=arrival, start=begin, departure=begin + place.service)
            )
            if begin > place.late:
                violations.append(
                    Violation(
                        "time_window",
                        vehicle.id,
                        (place.id,) if place.kind == "stop" else (),
                        f"with traffic by hour {place.kind} {place.id} is reached at "
                        f"{arrival}, window closes at {place.late}",
                    )
                )
        timed_route = replace(
            route, visits=tuple(visits), end=arrival_end, duration=arrival_end - route.start
        )
        timed.append(timed_route)
        violations.extend(_shift_violations(problem, vehicle, timed_route))
    return timed, violations


def _shift_violations(problem: Problem, vehicle: Vehicle, route: RoutePlan) -> list[Violation]:
    """Back after the shift ends, or longer than the maximum duration."""
    out = []
    end_depot = problem.depot(vehicle.end_depot)
    shift_end = min(vehicle.shift_end, end_depot.close)
    if route.end > shift_end:
        out.append(
            Violation(
                "shift",
                vehicle.id,
                tuple(route.stop_ids),
                f"back at depot {end_depot.id} at {route.end}, shift ends at {shift_end}",
            )
        )
    if vehicle.max_duration is not None and route.duration > vehicle.max_duration:
        out.append(
            Violation(
                "max_duration",
                vehicle.id,
                tuple(route.stop_ids),
                f"route takes {route.duration}, at most {vehicle.max_duration} allowed",
            )
        )
    return out


def check_plan(
    problem: Problem, routes: Sequence[tuple[str, Sequence[Step]]]
) -> tuple[list[RoutePlan], list[str], list[Violation]]:
    """Check a whole plan: every route, each vehicle used once, each stop served once.

    Returns the scheduled routes (non-empty ones), the optional stops left out and every
    violation; an empty violation list means the plan is feasible.
    """
    violations: list[Violation] = []
    planned: list[RoutePlan] = []
    vehicles = {v.id: v for v in problem.vehicles}
    used = Counter(vehicle_id for vehicle_id, _ in routes)
    for vehicle_id, count in used.items():
        if vehicle_id not in vehicles:
            violations.append(Violation("coverage", vehicle_id, (), "no such vehicle"))
        elif count > 1:
            violations.append(Violation("coverage", vehicle_id, (), f"has {count} routes"))
    served: Counter[str] = Counter()
    for vehicle_id, steps in routes:
        if vehicle_id not in vehicles or not steps:
            continue
        route, route_violations = simulate_route(problem, vehicles[vehicle_id], steps)
        planned.append(route)
        violations.extend(route_violations)
        served.update(route.stop_ids)
    twice = sorted(stop_id for stop_id, n in served.items() if n > 1)
    if twice:
        violations.append(Violation("coverage", None, tuple(twice), "stops visited more than once"))
    missing = [s.id for s in problem.stops if s.required and s.id not in served]
    if missing:
        violations.append(Violation("coverage", None, tuple(missing), "required stops not visited"))
    dropped = [s.id for s in problem.stops if not s.required and s.id not in served]
    return planned, dropped, violations


@dataclass(frozen=True)
class _Place:
    kind: str
    id: str
    location: int
    service: int
    early: int
    late: int
    demand: tuple[int, ...]


def _resolve(
    problem: Problem, vehicle: Vehicle, steps: Sequence[Step], violations: list[Violation]
) -> list[_Place]:
    stops = {s.id: s for s in problem.stops}
    facilities = {f.id: f for f in problem.facilities}
    zero = (0,) * len(vehicle.capacity)
    places: list[_Place] = []
    reloads = 0
    for kind, place_id in steps:
        if kind == "stop" and place_id in stops:
            s = stops[place_id]
            early, late = s.window if s.window else (0, 2**62)
            places.append(_Place("stop", s.id, s.location, s.service, early, late, s.demand))
        elif kind == "reload" and place_id in facilities:
            f = facilities[place_id]
            reloads += 1
            if place_id not in vehicle.reload_facilities:
                violations.append(
                    Violation("reload", vehicle.id, (), f"may not unload at facility {place_id}")
                )
            places.append(_Place("reload", f.id, f.location, f.service, f.open, f.close, zero))
        else:
            violations.append(Violation("coverage", vehicle.id, (), f"unknown {kind} {place_id!r}"))
    if vehicle.max_reloads is not None and reloads > vehicle.max_reloads:
        violations.append(
            Violation("reload", vehicle.id, (), f"{reloads} reloads, at most {vehicle.max_reloads}")
        )
    return places


def _forward(
    problem: Problem,
    start: int,
    end: int,
    places: list[_Place],
    departure: int,
    hourly: Sequence[float] = (),
) -> tuple[int, list[tuple[int, int]]]:
    """Arrival at the end depot and (arrival, service start) per place, leaving at
    `departure`; with `hourly`, each leg's duration times the factor of its start hour."""

    def leg(a: int, b: int, at: int) -> int:
        seconds = problem.duration[a][b]
        return round(seconds * hourly[at // 3600 % 24]) if hourly else seconds

    time = departure
    loc = start
    times: list[tuple[int, int]] = []
    for place in places:
        arrival = time + leg(loc, place.location, time)
        begin = max(arrival, place.early)
        times.append((arrival, begin))
        time = begin + place.service
        loc = place.location
    return time + leg(loc, end, time), times


def _check_load(
    vehicle: Vehicle, load: list[int], trip_stops: list[str], violations: list[Violation]
) -> None:
    for dim, (amount, cap) in enumerate(zip(load, vehicle.capacity, strict=True)):
        if amount > cap:
            violations.append(
                Violation(
                    "capacity",
                    vehicle.id,
                    tuple(trip_stops),
                    f"load {amount} in dimension {dim} exceeds capacity {cap}",
                )
            )

"""The baseline a plan is compared with: the stops' current order, or nearest neighbour.

"Improvement" is (baseline cost - plan cost) / baseline cost, both priced by
`plan_cost` on the same matrices, so the percentage compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from routing.solver.check import Step, Violation, check_plan
from routing.solver.diagnose import MAX_NAMED_STOPS, InfeasibleProblem
from routing.solver.problem import Problem, RoutePlan, Vehicle


def plan_cost(problem: Problem, routes: Sequence[RoutePlan], dropped: Sequence[str] = ()) -> int:
    """The objective the solver minimises, recomputed from scheduled routes."""
    vehicles = {v.id: v for v in problem.vehicles}
    total = 0
    for r in routes:
        v = vehicles[r.vehicle_id]
        total += v.fixed_cost + v.cost_per_distance * r.distance + v.cost_per_duration * r.duration
    prizes = {s.id: s.prize for s in problem.stops}
    return total + sum(prizes[s] for s in dropped)


def nearest_neighbour(problem: Problem) -> list[tuple[str, list[Step]]]:
    """A greedy plan: each vehicle in turn takes the nearest stop it can still serve.

    A stop is appended only if the route stays feasible (window, capacity after an
    optional reload, return before the shift ends); stops no vehicle takes this way are
    left out (the checker then reports them as not visited).
    """
    left = {s.id for s in problem.stops}
    routes: list[tuple[str, list[Step]]] = []
    for vehicle in problem.vehicles:
        steps = _greedy_route(problem, vehicle, left)
        if steps:
            routes.append((vehicle.id, steps))
    return routes


@dataclass(frozen=True)
class Baseline:
    method: str  # "current order" | "nearest neighbour"
    cost: int
    distance: int
    duration: int
    feasible: bool
    unserved: tuple[str, ...]
    # Why today's rounds were not the baseline ("" when they were, or none were given).
    current_rejected: str = ""

    def improvement(self, cost: int) -> float:
        """How much cheaper `cost` is than the baseline, in % of the baseline."""
        return 100.0 * (self.cost - cost) / self.cost if self.cost else 0.0


def baseline(
    problem: Problem, current: Sequence[tuple[str, Sequence[Step]]] | None = None
) -> Baseline:
    """Cost of the current order (when given) or of nearest neighbour, and its feasibility."""
    routes = [(v, list(s)) for v, s in current] if current else nearest_neighbour(problem)
    return _priced(problem, routes, "current order" if current else "nearest neighbour")[0]


def _priced(
    problem: Problem, routes: Sequence[tuple[str, Sequence[Step]]], method: str
) -> tuple[Baseline, list[Violation]]:
    planned, dropped, violations = check_plan(problem, routes)
    base = Baseline(
        method=method,
        cost=plan_cost(problem, planned, dropped),
        distance=sum(r.distance for r in planned),
        duration=sum(r.duration for r in planned),
        feasible=not violations,
        unserved=tuple(
            sorted({s for v in violations if v.constraint == "coverage" for s in v.stop_ids})
        ),
    )
    return base, violations


def current_routes(
    problem: Problem, current: Mapping[str, Sequence[str]]
) -> list[tuple[str, list[Step]]]:
    """Today's rounds as routes: each truck's stops in their recorded order, with an
    unload at its nearest reload facility inserted before a stop that would overfill it
    (what the driver does), as often as it may unload; beyond that the check reports
    its capacity."""
    stops = {s.id: s for s in problem.stops}
    vehicles = {v.id: v for v in problem.vehicles}
    routes: list[tuple[str, list[Step]]] = []
    for vehicle_id, stop_ids in current.items():
        vehicle = vehicles.get(vehicle_id)
        if vehicle is None:
            routes.append((vehicle_id, [("stop", s) for s in stop_ids]))
            continue
        facilities = [problem.facility(f) for f in vehicle.reload_facilities]
        loc = problem.depot(vehicle.start_depot).location
        load = [0] * len(vehicle.capacity)
        reloads = 0
        steps: list[Step] = []
        for stop_id in stop_ids:
            stop = stops.get(stop_id)
            if stop is None:
                steps.append(("stop", stop_id))  # the check names it
                continue
            over = any(
                a + d > c for a, d, c in zip(load, stop.demand, vehicle.capacity, strict=True)
            )
            may_unload = vehicle.max_reloads is None or reloads < vehicle.max_reloads
            if over and facilities and any(load) and may_unload:
                nearest = min(facilities, key=lambda f: problem.duration[loc][f.location])
                steps.append(("reload", nearest.id))
                reloads += 1
                load = [0] * len(load)
                loc = nearest.location
            steps.append(("stop", stop_id))
            load = [a + d for a, d in zip(load, stop.demand, strict=True)]
            loc = stop.location
        routes.append((vehicle_id, steps))
    return routes


def choose_baseline(problem: Problem, current: Mapping[str, Sequence[str]]) -> Baseline:
    """Today's rounds when they serve every required stop feasibly, else nearest
    neighbour (an infeasible or partial current order would flatter the plan); the
    returned baseline says why the current order was rejected."""
    if not current:
        return baseline(problem)
    in_rounds = {s for stop_ids in current.values() for s in stop_ids}
    missing = [s.id for s in problem.stops if s.required and s.id not in in_rounds]
    if missing:
        named = ", ".join(missing[:MAX_NAMED_STOPS])
        more = (
            f" and {len(missing) - MAX_NAMED_STOPS} more" if len(missing) > MAX_NAMED_STOPS else ""
        )
        reason = f"stops in no current round: {named}{more}"
    else:
        base, violations = _priced(problem, current_routes(problem, current), "current order")
        if not violations:
            return base
        reason = InfeasibleProblem(violations).summary()
    fallback = baseline(problem)
    return Baseline(**{**fallback.__dict__, "current_rejected": reason})


def _greedy_route(problem: Problem, vehicle: Vehicle, left: set[str]) -> list[Step]:
    stops = {s.id: s for s in problem.stops}
    depot = problem.depot(vehicle.start_depot)
    end = problem.depot(vehicle.end_depot)
    facility = problem.facility(vehicle.reload_facilities[0]) if vehicle.reload_facilities else None
    dur = problem.duration
    loc = depot.location
    time = max(vehicle.shift_start, depot.open)
    load = [0] * len(vehicle.capacity)
    reloads = 0
    steps: list[Step] = []
    shift_end = min(vehicle.shift_end, end.close)
    while True:
        best = None
        for stop_id in left:
            s = stops[stop_id]
            early, late = s.window if s.window else (0, 2**62)
            arrive = max(time + dur[loc][s.location], early)
            fits = all(a + d <= c for a, d, c in zip(load, s.demand, vehicle.capacity, strict=True))
            if (
                not fits
                or arrive > late
                or arrive + s.service + dur[s.location][end.location] > shift_end
            ):
                continue
            if best is None or dur[loc][s.location] < dur[loc][stops[best].location]:
                best = stop_id
        if best is not None:
            s = stops[best]
            early = s.window[0] if s.window else 0
            time = max(time + dur[loc][s.location], early) + s.service
            loc = s.location
            load = [a + d for a, d in zip(load, s.demand, strict=True)]
            steps.append(("stop", best))
            left.discard(best)
            continue
        can_reload = facility is not None and (
            vehicle.max_reloads is None or reloads < vehicle.max_reloads
        )
        if not can_reload or not any(load) or facility is None:
            break
        time = max(time + dur[loc][facility.location], facility.open) + facility.service
        if time + dur[facility.location][end.location] > shift_end:
            break
        loc = facility.location
        load = [0] * len(load)
        reloads += 1
        steps.append(("reload", facility.id))
    while steps and steps[-1][0] == "reload":  # unloading after the last stop gains nothing
        steps.pop()
    return steps

"""Why an instance cannot be solved: checks per stop before any search, and the error.

A stop that no vehicle can carry, reach within its window, or serve and still get back
before the shift ends makes the whole instance impossible; the solver would search its
full time limit and return an infeasible plan. We say so at once, naming the stops.
"""

from __future__ import annotations

from collections.abc import Sequence

from routing.solver.check import Violation
from routing.solver.problem import Problem, Stop, Vehicle

# At most this many stop ids in an error message (the exception keeps all of them).
MAX_NAMED_STOPS = 10


class InfeasibleProblem(Exception):
    """No feasible plan: carries the violations, each naming its constraint and stops."""

    def __init__(self, violations: Sequence[Violation], solver_said_feasible: bool = False):
        self.violations = list(violations)
        self.solver_said_feasible = solver_said_feasible
        super().__init__(self.summary())

    def summary(self) -> str:
        by_constraint: dict[str, list[str]] = {}
        details: dict[str, str] = {}
        for v in self.violations:
            by_constraint.setdefault(v.constraint, []).extend(v.stop_ids)
            details.setdefault(v.constraint, v.detail)
        parts = []
        for constraint, stops in by_constraint.items():
            unique = list(dict.fromkeys(stops))
            named = ", ".join(unique[:MAX_NAMED_STOPS])
            more = (
                f" and {len(unique) - MAX_NAMED_STOPS} more"
                if len(unique) > MAX_NAMED_STOPS
                else ""
            )
            who = f" for stops {named}{more}" if unique else ""
            parts.append(f"{constraint}{who}: {details[constraint]}")
        prefix = (
            "solver returned a plan our check rejects: "
            if self.solver_said_feasible
            else "infeasible: "
        )
        return prefix + "; ".join(parts)

    @property
    def stop_ids(self) -> list[str]:
        return list(dict.fromkeys(s for v in self.violations for s in v.stop_ids))

    @property
    def constraints(self) -> list[str]:
        return list(dict.fromkeys(v.constraint for v in self.violations))


def diagnose(problem: Problem) -> list[Violation]:
    """Why no plan can exist, found without searching: inconsistent input, stops that no
    vehicle can serve on its own, or more demand than the whole fleet can carry. Empty
    when none of these holds (the search may still find no plan)."""
    problems = _structure(problem)
    if problems:
        return problems
    return _per_stop(problem) + _fleet_capacity(problem)


def fleet_capacity(problem: Problem) -> list[int | None]:
    """Per load dimension, what the whole fleet can carry in a day: each vehicle's
    capacity times its trips (1 + max_reloads when it may unload); None when some
    vehicle may unload without limit."""
    totals: list[int | None] = [0] * len(problem.dimensions)
    for v in problem.vehicles:
        if v.reload_facilities and v.max_reloads is None:
            return [None] * len(problem.dimensions)
        trips = 1 + ((v.max_reloads or 0) if v.reload_facilities else 0)
        totals = [
            None if t is None else t + c * trips for t, c in zip(totals, v.capacity, strict=True)
        ]
    return totals


def _fleet_capacity(problem: Problem) -> list[Violation]:
    """Total required demand per dimension against the fleet's total capacity."""
    over = []
    for dim, (name, total) in enumerate(
        zip(problem.dimensions, fleet_capacity(problem), strict=True)
    ):
        demand = sum(s.demand[dim] for s in problem.stops if s.required)
        if total is not None and demand > total:
            over.append(f"{name} {demand} > {total}")
    if not over:
        return []
    trucks = len(problem.vehicles)
    return [
        Violation(
            "fleet_capacity",
            None,
            (),
            f"total demand exceeds the fleet's total capacity ({'; '.join(over)}; "
            f"{trucks} vehicle{'s' if trucks != 1 else ''}, counting each allowed unload "
            "as a new load): add vehicles or reloads, or plan fewer stops",
        )
    ]


def _per_stop(problem: Problem) -> list[Violation]:
    """Stops that no vehicle can serve on its own."""
    too_heavy: list[Stop] = []
    too_late: list[Stop] = []
    too_far: list[Stop] = []
    for stop in problem.stops:
        if not stop.required:
            continue
        fits = [v for v in problem.vehicles if _fits(stop, v)]
        if not fits:
            too_heavy.append(stop)
            continue
        verdicts = [_reachable(problem, stop, v) for v in fits]
        if "ok" in verdicts:
            continue
        if all(v == "time_window" for v in verdicts):
            too_late.append(stop)
        else:
            too_far.append(stop)
    out = []
    if too_heavy:
        out.append(
            Violation(
                "capacity",
                None,
                tuple(s.id for s in too_heavy),
                "demand exceeds the capacity of every vehicle",
            )
        )
    if too_late:
        out.append(
            Violation(
                "time_window",
                None,
                tuple(s.id for s in too_late),
                "no vehicle can arrive before the window closes",
            )
        )
    if too_far:
        out.append(
            Violation(
                "shift",
                None,
                tuple(s.id for s in too_far),
                "no vehicle can serve it and return within its shift or maximum duration",
            )
        )
    return out


def _structure(problem: Problem) -> list[Violation]:
    """Inconsistent input (unknown depots, wrong dimensions): not a search problem."""
    out: list[Violation] = []
    n = len(problem.distance)
    depot_ids = {d.id for d in problem.depots}
    facility_ids = {f.id for f in problem.facilities}
    dims = len(problem.dimensions)
    if not problem.vehicles:
        out.append(Violation("fleet", None, (), "there are no vehicles"))
    for v in problem.vehicles:
        if v.start_depot not in depot_ids or v.end_depot not in depot_ids:
            out.append(Violation("fleet", v.id, (), "start or end depot unknown"))
        if len(v.capacity) != dims:
            out.append(Violation("fleet", v.id, (), f"capacity needs {dims} dimensions"))
        unknown = set(v.reload_facilities) - facility_ids
        if unknown:
            out.append(Violation("reload", v.id, (), f"unknown facilities {sorted(unknown)}"))
    bad = [s.id for s in problem.stops if len(s.demand) != dims or not 0 <= s.location < n]
    if bad:
        out.append(
            Violation(
                "input", None, tuple(bad), f"demand needs {dims} dimensions and a known location"
            )
        )
    if len(problem.duration) != n or any(
        len(row) != n for row in (*problem.distance, *problem.duration)
    ):
        out.append(
            Violation("input", None, (), "distance and duration matrices must be square and equal")
        )
    return out


def _fits(stop: Stop, vehicle: Vehicle) -> bool:
    return all(d <= c for d, c in zip(stop.demand, vehicle.capacity, strict=True))


def _reachable(problem: Problem, stop: Stop, vehicle: Vehicle) -> str:
    start = problem.depot(vehicle.start_depot)
    end = problem.depot(vehicle.end_depot)
    there = problem.duration[start.location][stop.location]
    back = problem.duration[stop.location][end.location]
    early, late = stop.window if stop.window else (0, 2**62)
    begin = max(max(vehicle.shift_start, start.open) + there, early)
    if begin > late:
        return "time_window"
    if begin + stop.service + back > min(vehicle.shift_end, end.close):
        return "shift"
    if vehicle.max_duration is not None and there + stop.service + back > vehicle.max_duration:
        return "shift"
    return "ok"

"""The PyVRP adapter: our `Problem` in, a checked `Plan` out.

PyVRP (pinned in requirements.txt; its 0.x API changes between versions) is used only
here. Mapping: our depots and then our facilities become PyVRP depots (facilities are
the vehicles' `reload_depots`, so a visit empties the truck: multi-trip); stops are
clients with a pickup per load dimension, service duration, time window and, when
optional, a prize; vehicles with identical attributes share one vehicle type (fewer
symmetric types search better). The solver's answer is re-checked by
`routing.solver.check` before it is returned.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import pyvrp
from pyvrp.exceptions import PenaltyBoundWarning

from routing.solver.baseline import plan_cost
from routing.solver.check import Step, Violation, check_plan, retime_plan
from routing.solver.diagnose import InfeasibleProblem, diagnose
from routing.solver.problem import UNBOUNDED, Plan, Problem, Vehicle

# How often the progress callback is called at most (seconds): often enough for a
# progress bar, rarely enough that writing it to the database costs nothing.
PROGRESS_INTERVAL = 0.5

# Called with (fraction of the time limit used, cost of the best feasible plan or None).
# Returning False stops the search early (e.g. the job was cancelled).
ProgressCallback = Callable[[float, int | None], bool | None]

# PyVRP reports the cost of an infeasible best solution as a huge number.
_INFEASIBLE_COST = 2**60


@dataclass
class _Stop:
    """PyVRP stopping criterion: the time limit, plus progress reports and early stops.

    `clock` measures the limit: wall time (what a user waits for) by default, or the
    process's CPU time (`time.process_time`) for benchmarks on a shared machine.
    """

    time_limit: float
    progress: ProgressCallback | None
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self._started: float | None = None
        self._last_report = time.perf_counter()
        self.stopped_early = False

    def __call__(self, best_cost: int) -> bool:
        now = self.clock()
        if self._started is None:
            self._started = now
        elapsed = now - self._started
        if elapsed > self.time_limit:
            return True
        wall = time.perf_counter()
        if self.progress is not None and wall - self._last_report >= PROGRESS_INTERVAL:
            self._last_report = wall
            fraction = min(1.0, elapsed / max(self.time_limit, 1e-9))
            cost = int(best_cost) if best_cost < _INFEASIBLE_COST else None
            if self.progress(fraction, cost) is False:
                self.stopped_early = True
                return True
        return False


def _vehicle_key(v: Vehicle) -> tuple[object, ...]:
    return (
        v.start_depot,
        v.end_depot,
        v.capacity,
        v.shift_start,
        v.shift_end,
        v.max_duration,
        v.cost_per_distance,
        v.cost_per_duration,
        v.fixed_cost,
        v.reload_facilities,
        v.max_reloads,
    )


def to_pyvrp(problem: Problem) -> tuple[pyvrp.ProblemData, list[list[str]]]:
    """The PyVRP instance for `problem`, and per vehicle type the ids of its vehicles."""
    n = len(problem.distance)
    coords = problem_coords(problem)
    locations = [pyvrp.Location(x=coords[i][0], y=coords[i][1]) for i in range(n)]
    depot_index = {d.id: i for i, d in enumerate(problem.depots)}
    facility_index = {f.id: len(problem.depots) + i for i, f in enumerate(problem.facilities)}
    depots = [
        pyvrp.Depot(d.location, tw_early=d.open, tw_late=d.close, name=d.id) for d in problem.depots
    ]
    depots += [
        pyvrp.Depot(
            f.location, tw_early=f.open, tw_late=f.close, service_duration=f.service, name=f.id
        )
        for f in problem.facilities
    ]
    clients = []
    for s in problem.stops:
        early, late = s.window if s.window else (0, UNBOUNDED)
        clients.append(
            pyvrp.Client(
                s.location,
                pickup=list(s.demand),
                service_duration=s.service,
                tw_early=early,
                tw_late=late,
                prize=s.prize,
                required=s.required,
                name=s.id,
            )
        )
    groups: dict[tuple[object, ...], list[Vehicle]] = {}
    for v in problem.vehicles:
        groups.setdefault(_vehicle_key(v), []).append(v)
    vehicle_types = []
    type_vehicles: list[list[str]] = []
    for members in groups.values():
        v = members[0]
        kwargs: dict[str, object] = {}
        if v.max_duration is not None:
            kwargs["shift_duration"] = v.max_duration
        if v.max_reloads is not None:
            kwargs["max_reloads"] = v.max_reloads
        vehicle_types.append(
            pyvrp.VehicleType(
                num_available=len(members),
                capacity=list(v.capacity),
                start_depot=depot_index[v.start_depot],
                end_depot=depot_index[v.end_depot],
                fixed_cost=v.fixed_cost,
                tw_early=v.shift_start,
                tw_late=v.shift_end,
                unit_distance_cost=v.cost_per_distance,
                unit_duration_cost=v.cost_per_duration,
                reload_depots=[facility_index[f] for f in v.reload_facilities],
                name=v.id,
                **kwargs,  # type: ignore[arg-type]
            )
        )
        type_vehicles.append([m.id for m in members])
    distance = np.asarray(problem.distance, dtype=np.int64)
    duration = np.asarray(problem.duration, dtype=np.int64)
    # PyVRP's stub types matrices as ndarray[int]; numpy's own typing differs.
    matrices: list[Any] = [distance, duration]
    data = pyvrp.ProblemData(locations, clients, depots, vehicle_types, matrices[:1], matrices[1:])
    return data, type_vehicles


def problem_coords(problem: Problem) -> list[tuple[float, float]]:
    """Coordinates per location for PyVRP (only used for its neighbourhoods' tie-breaks)."""
    if len(problem.coords) == len(problem.distance):
        return [(float(x), float(y)) for x, y in problem.coords]
    return [(0.0, 0.0)] * len(problem.distance)


def solve(
    problem: Problem,
    time_limit: float = 10.0,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cpu_time: bool = False,
) -> Plan:
    """Solve `problem` within `time_limit` seconds (one core) and return a checked plan.

    `cpu_time`: count the limit in CPU seconds of this process rather than wall seconds
    (benchmarks on a shared machine).

    Raises `InfeasibleProblem` naming the stops and the constraint when a stop cannot be
    served by any vehicle, or when no feasible plan was found in the time.
    """
    problems = diagnose(problem)
    if problems:
        raise InfeasibleProblem(problems)
    data, type_vehicles = to_pyvrp(problem)
    stop = _Stop(time_limit, progress, time.process_time if cpu_time else time.perf_counter)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # PyVRP warns when its penalty for a constraint hits its bound (tight instances):
        # a tuning hint for PyVRP's developers, not news for our logs or a worker's stderr.
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        result = pyvrp.solve(data, stop, seed=seed, collect_stats=False, display=False)
    runtime = time.perf_counter() - started
    best = result.best
    if not best.is_feasible():
        raise InfeasibleProblem(_solver_violations(problem, data, best, type_vehicles))

    routes = solution_steps(problem, data, best, type_vehicles)
    planned, dropped, violations = check_plan(problem, routes)
    if violations:
        # PyVRP called it feasible but our check disagrees: never ship it.
        raise InfeasibleProblem(violations, solver_said_feasible=True)
    # The cost of the schedule we checked (the solver's own figure is kept in the stats:
    # they differ only if PyVRP times a route differently from our check).
    cost = plan_cost(problem, planned, dropped)
    # The schedule users see: each leg timed for the hour it starts in (traffic), where
    # the problem has hourly factors. The cost stays priced on the matrices the search
    # and the baseline used; what this timing breaks is flagged, not hidden.
    timed, late = retime_plan(problem, planned)
    if progress is not None:
        progress(1.0, cost)
    return Plan(
        routes=tuple(timed),
        dropped=tuple(dropped),
        cost=cost,
        distance=sum(r.distance for r in timed),
        duration=sum(r.duration for r in timed),
        feasible=True,
        stats={
            "solver": f"pyvrp {version('pyvrp')}",
            "iterations": int(result.num_iterations),
            "runtime_seconds": round(runtime, 3),
            "time_limit_seconds": time_limit,
            "seed": seed,
            "stopped_early": stop.stopped_early,
            "solver_cost": int(result.cost()),
            "timing": "by departure hour" if problem.hourly_factor else "static matrices",
            "traffic_warnings": [str(v) for v in late],
        },
    )


def solution_steps(
    problem: Problem,
    data: pyvrp.ProblemData,
    solution: pyvrp.Solution,
    type_vehicles: list[list[str]],
) -> list[tuple[str, list[Step]]]:
    """The solver's routes as (vehicle id, steps), with facility visits as reloads."""
    n_depots = len(problem.depots)
    free = [list(ids) for ids in type_vehicles]
    routes: list[tuple[str, list[Step]]] = []
    for route in solution.routes():
        vehicle_id = free[route.vehicle_type()].pop(0)
        activities = list(route)[1:-1]  # without the start and end depot
        steps: list[Step] = []
        for act in activities:
            if act.is_client():
                steps.append(("stop", problem.stops[act.idx].id))
            elif act.is_depot() and act.idx >= n_depots:
                steps.append(("reload", problem.facilities[act.idx - n_depots].id))
            elif act.is_depot():
                # A trip boundary at an ordinary depot cannot happen (depots are never
                # reload points); keep it visible to the checker rather than drop it.
                steps.append(("reload", problem.depots[act.idx].id))
        routes.append((vehicle_id, steps))
    return routes


def _solver_violations(
    problem: Problem, data: pyvrp.ProblemData, best: pyvrp.Solution, type_vehicles: list[list[str]]
) -> list[Violation]:
    """Why the best solution found is infeasible, in our terms (checked by us)."""
    routes = solution_steps(problem, data, best, type_vehicles)
    _, _, violations = check_plan(problem, routes)
    if not violations:
        violations = [
            Violation("unknown", None, (), "the solver found no feasible plan in the time limit")
        ]
    return violations

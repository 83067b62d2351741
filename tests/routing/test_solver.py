"""The solver adapter without Django: our feasibility check on hand-made plans, impossible
instances, the benchmark file readers, and small solves that the check accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.generate import collection_problem
from routing.solver import (
    Depot,
    Facility,
    InfeasibleProblem,
    InstanceFormatError,
    Problem,
    Stop,
    Vehicle,
    check_plan,
    read_instance,
    solve,
)
from routing.solver.baseline import baseline, choose_baseline, current_routes

BENCH = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "vrp" / "instances"


def line_problem(**vehicle: object) -> Problem:
    """Depot at 0, stops A, B, C at 10, 20, 30 on a line, a facility F at 15.

    Travel time = distance. A: 4 units, window [0, 100]; B: 4 units, window [25, 40];
    C: 4 units. One vehicle, capacity 8 unless overridden.
    """
    xs = [0, 10, 20, 30, 15]  # depot, A, B, C, F
    matrix = tuple(tuple(abs(a - b) for b in xs) for a in xs)
    options: dict[str, object] = {
        "capacity": (8,),
        "shift_start": 0,
        "shift_end": 200,
        "reload_facilities": ("F",),
    }
    options.update(vehicle)
    return Problem(
        depots=(Depot("D", 0),),
        facilities=(Facility("F", 4, service=5),),
        stops=(
            Stop("A", 1, (4,), service=2, window=(0, 100)),
            Stop("B", 2, (4,), service=2, window=(25, 40)),
            Stop("C", 3, (4,), service=2),
        ),
        vehicles=(Vehicle("V", "D", "D", **options),),  # type: ignore[arg-type]
        distance=matrix,
        duration=matrix,
    )


def violations(problem: Problem, steps: list[tuple[str, str]]) -> list[str]:
    return [
        f"{v.constraint}:{','.join(v.stop_ids)}" for v in check_plan(problem, [("V", steps)])[2]
    ]


def test_capacity_is_checked_per_trip_and_a_reload_empties_the_truck():
    problem = line_problem()
    no_reload = [("stop", "A"), ("stop", "B"), ("stop", "C")]
    assert violations(problem, no_reload) == ["capacity:A,B,C"]
    with_reload = [("stop", "A"), ("stop", "B"), ("reload", "F"), ("stop", "C")]
    assert violations(problem, with_reload) == []
    route = check_plan(problem, [("V", with_reload)])[0][0]
    assert [v.load_on_arrival for v in route.visits] == [(0,), (4,), (8,), (0,)]
    assert route.reloads == 1


def test_a_reload_at_a_facility_the_vehicle_may_not_use_is_refused():
    problem = line_problem(reload_facilities=())
    steps = [("stop", "A"), ("stop", "B"), ("reload", "F"), ("stop", "C")]
    assert "reload:" in violations(problem, steps)


def test_max_reloads():
    problem = line_problem(max_reloads=0)
    steps = [("stop", "A"), ("reload", "F"), ("stop", "B"), ("stop", "C")]
    assert violations(problem, steps) == ["reload:"]


def test_time_windows_wait_when_early_and_fail_when_late():
    problem = line_problem(capacity=(100,))
    # B opens at 25: service starts then, never before (the truck waits, or leaves later).
    route = check_plan(problem, [("V", [("stop", "A"), ("stop", "B"), ("stop", "C")])])[0][0]
    assert route.visits[1].start == 25 >= route.visits[1].arrival
    # Going to C first: B is reached at 32 + 2 + 10 = 44 > 40.
    assert violations(problem, [("stop", "C"), ("stop", "B"), ("stop", "A")]) == ["time_window:B"]


def test_the_truck_leaves_as_late_as_helps_so_waiting_does_not_count_against_the_shift():
    problem = line_problem(capacity=(100,), max_duration=66)
    # Leaving at 0, the truck would wait 3 units at B; it leaves at 3 instead: A at 13,
    # B at 25, C at 37, back at 69: 66 units, not 69.
    steps = [("stop", "A"), ("stop", "B"), ("stop", "C")]
    route = check_plan(problem, [("V", steps)])[0][0]
    assert (route.start, route.end, route.duration) == (3, 69, 66)
    assert violations(problem, steps) == []
    tight = line_problem(capacity=(100,), max_duration=65)
    assert violations(tight, steps) == ["max_duration:A,B,C"]


def test_shift_end():
    problem = line_problem(capacity=(100,), shift_end=50)
    # A, B, C: back at the depot at 25 + 2 + 10 + 2 + 30 = 69 > 50.
    assert violations(problem, [("stop", "A"), ("stop", "B"), ("stop", "C")]) == ["shift:A,B,C"]


def test_every_required_stop_once():
    problem = line_problem(capacity=(100,))
    assert violations(problem, [("stop", "A"), ("stop", "B")]) == ["coverage:C"]
    twice = [("stop", "A"), ("stop", "A"), ("stop", "B"), ("stop", "C")]
    assert "coverage:A" in violations(problem, twice)


def test_solve_uses_the_facility_and_returns_a_checked_plan():
    problem = line_problem()
    plan = solve(problem, time_limit=0.3, seed=1)
    assert plan.feasible
    (route,) = plan.routes
    assert sorted(route.stop_ids) == ["A", "B", "C"]
    assert route.reloads == 1  # 12 units to collect, capacity 8


def test_an_impossible_instance_names_the_stops_and_the_constraint():
    base = line_problem()
    heavy = Stop("HEAVY", 3, (9,))
    late = Stop("LATE", 3, (1,), window=(0, 5))  # 30 units away, closes at 5
    problem = Problem(
        base.depots,
        base.facilities,
        (*base.stops, heavy, late),
        base.vehicles,
        base.distance,
        base.duration,
    )
    with pytest.raises(InfeasibleProblem) as err:
        solve(problem, time_limit=0.2)
    message = str(err.value)
    assert "capacity for stops HEAVY" in message
    assert "time_window for stops LATE" in message
    assert err.value.stop_ids == ["HEAVY", "LATE"]


def test_a_fleet_too_small_for_the_day_is_an_error_not_a_plan():
    problem = line_problem(capacity=(4,), reload_facilities=())
    with pytest.raises(InfeasibleProblem) as err:
        solve(problem, time_limit=0.3)
    # One message with the totals, not every stop under a per-trip capacity message.
    assert err.value.constraints == ["fleet_capacity"]
    assert "total demand exceeds the fleet's total capacity (load 12 > 4;" in str(err.value)
    assert err.value.stop_ids == []
    # Two unloads allowed: 3 loads of 4 carry the 12 units, so the day is not refused.
    assert solve(line_problem(capacity=(4,), max_reloads=2), time_limit=0.3).feasible


def two_dimensions(capacity: tuple[int, int]) -> Problem:
    """line_problem with kg and litres: A and B 1 kg / 5 l each."""
    base = line_problem()
    return Problem(
        base.depots,
        base.facilities,
        (Stop("A", 1, (1, 5)), Stop("B", 2, (1, 5))),
        (Vehicle("V", "D", "D", capacity, reload_facilities=("F",)),),
        base.distance,
        base.duration,
        dimensions=("kg", "litres"),
    )


def test_capacity_is_checked_in_every_dimension_on_its_own():
    steps = [("stop", "A"), ("stop", "B")]
    # 2 kg of 100 is fine; 10 l of 8 is not: only the second dimension is broken.
    (violation,) = check_plan(two_dimensions((100, 8)), [("V", steps)])[2]
    assert violation.constraint == "capacity" and violation.stop_ids == ("A", "B")
    assert violation.detail == "load 10 in dimension 1 exceeds capacity 8"
    assert check_plan(two_dimensions((100, 10)), [("V", steps)])[2] == []


def test_a_route_may_end_at_another_depot():
    base = line_problem(capacity=(100,))
    xs = [0, 10, 20, 30, 15, 40]  # D, A, B, C, F, E (the end depot)
    matrix = tuple(tuple(abs(a - b) for b in xs) for a in xs)
    problem = Problem(
        (Depot("D", 0), Depot("E", 5)),
        base.facilities,
        base.stops,
        (Vehicle("V", "D", "E", (100,)),),
        matrix,
        matrix,
    )
    steps = [("stop", "A"), ("stop", "B"), ("stop", "C")]
    (route,), _, found = check_plan(problem, [("V", steps)])
    assert found == [] and route.distance == 40  # 0 -> 30 -> 40, no way back to D
    plan = solve(problem, time_limit=0.3, seed=1)
    assert plan.distance == 40 and plan.routes[0].end == route.end


def test_a_facility_is_used_only_within_its_opening_hours():
    base = line_problem()
    steps = [("stop", "A"), ("stop", "B"), ("reload", "F"), ("stop", "C")]

    def with_hours(opens: int, closes: int) -> Problem:
        facility = Facility("F", 4, service=5, open=opens, close=closes)
        return Problem(
            base.depots, (facility,), base.stops, base.vehicles, base.distance, base.duration
        )

    # B is served 25-27; F is 5 away: reached at 32.
    assert violations(with_hours(0, 30), steps) == ["time_window:"]
    (found,) = check_plan(with_hours(0, 30), [("V", steps)])[2]
    assert found.detail == "reload F reached at 32, window closes at 30"
    route = check_plan(with_hours(50, 100), [("V", steps)])[0][0]
    # Unloading starts at the opening, never before (the truck leaves later to wait less).
    assert route.visits[2].arrival <= 50 == route.visits[2].start
    assert violations(with_hours(50, 100), steps) == []


def test_the_final_schedule_is_timed_by_departure_hour_and_flags_what_traffic_breaks():
    hour = 3600
    # Depot and A half an hour apart on the static matrix; the 07:00 hour is twice as slow.
    matrix = ((0, 1800), (1800, 0))
    rush = (1.0,) * 7 + (2.0,) + (1.0,) * 16

    def problem(window_end: int) -> Problem:
        return Problem(
            depots=(Depot("D", 0),),
            facilities=(),
            stops=(Stop("A", 1, (1,), service=600, window=(7 * hour, window_end)),),
            vehicles=(Vehicle("V", "D", "D", (10,), shift_start=7 * hour, shift_end=9 * hour),),
            distance=matrix,
            duration=matrix,
            hourly_factor=rush,
        )

    plan = solve(problem(9 * hour), time_limit=0.2, seed=1)
    (visit,) = plan.routes[0].visits
    # Leaves 07:00, an hour (not half an hour) to A; back at 08:10 + 30 min (08:00 is 1.0).
    assert (plan.routes[0].start, visit.arrival) == (7 * hour, 8 * hour)
    assert plan.routes[0].end == 8 * hour + 600 + 1800
    assert plan.stats["traffic_warnings"] == []

    tight = solve(problem(7 * hour + 2700), time_limit=0.2, seed=1)  # closes 07:45
    assert tight.feasible  # on the static matrix: there at 07:30
    assert tight.stats["traffic_warnings"] == [
        "time_window: vehicle V: with traffic by hour stop A is reached at 28800, "
        "window closes at 27900 (stops A)"
    ]


def test_current_rounds_unload_when_the_truck_is_full():
    problem = line_problem()
    (route,) = current_routes(problem, {"V": ["A", "B", "C"]})
    assert route == ("V", [("stop", "A"), ("stop", "B"), ("reload", "F"), ("stop", "C")])
    base = choose_baseline(problem, {"V": ["A", "B", "C"]})
    assert base.method == "current order" and base.feasible and base.current_rejected == ""


def test_an_infeasible_or_partial_current_order_is_rejected_with_the_reason():
    problem = line_problem(capacity=(100,))
    late = choose_baseline(problem, {"V": ["C", "B", "A"]})  # B reached after its window
    assert late.method == "nearest neighbour" and late.feasible
    assert late.current_rejected.startswith("infeasible: time_window for stops B")
    partial = choose_baseline(problem, {"V": ["A", "B"]})
    assert partial.method == "nearest neighbour"
    assert partial.current_rejected == "stops in no current round: C"
    assert choose_baseline(problem, {}).current_rejected == ""


def test_optional_stops_are_dropped_when_their_prize_is_lower_than_their_cost():
    base = line_problem(capacity=(100,))
    far = Stop("FAR", 3, (1,), required=False, prize=1)
    problem = Problem(
        base.depots,
        base.facilities,
        (*base.stops[:2], far),
        base.vehicles,
        base.distance,
        base.duration,
    )
    plan = solve(problem, time_limit=0.2)
    assert plan.dropped == ("FAR",)


def test_collection_day_beats_nearest_neighbour_with_reloads_and_two_depots():
    problem = collection_problem(stops=60, trucks=4, seed=3)
    updates: list[float] = []
    plan = solve(problem, time_limit=1.0, seed=1, progress=lambda f, c: updates.append(f))
    assert plan.feasible and updates and updates[-1] == 1.0
    served = sorted(s for r in plan.routes for s in r.stop_ids)
    assert served == sorted(s.id for s in problem.stops)
    assert baseline(problem).improvement(plan.cost) > 10


@pytest.mark.skipif(not BENCH.exists(), reason="shared benchmark instances not present")
def test_readers_follow_the_benchmark_conventions():
    cvrp = read_instance(BENCH / "cvrp" / "A-n32-k5.vrp")
    assert len(cvrp.problem.stops) == 31 and len(cvrp.problem.vehicles) == 5
    plan = solve(cvrp.problem, time_limit=1.0, seed=1)
    assert plan.cost == 784  # the proven optimum, nint distances
    tw = read_instance(BENCH / "vrptw" / "C101.txt", customers=25)
    assert tw.scale == 10 and len(tw.problem.stops) == 25
    assert solve(tw.problem, time_limit=1.0, seed=1).cost / tw.scale == pytest.approx(191.3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello", "neither a VRPLIB"),
        ("NAME : x\nTYPE : TSP\nEDGE_WEIGHT_TYPE : EUC_2D\n", "TYPE must be CVRP"),
        (
            "NAME : x\nTYPE : CVRP\nEDGE_WEIGHT_TYPE : EUC_2D\nDIMENSION : 2\nCAPACITY : 5\n",
            "missing",
        ),
        (
            "NAME : x\nTYPE : CVRP\nEDGE_WEIGHT_TYPE : EUC_2D\nDIMENSION : 2\nCAPACITY : 5\n"
            "NODE_COORD_SECTION\n1 0 0\n2 a 1\nDEMAND_SECTION\n1 0\n2 1\n"
            "DEPOT_SECTION\n1\n-1\nEOF\n",
            "malformed",
        ),
        ("C101\nVEHICLE\nNUMBER CAPACITY\n25 200\nCUSTOMER\nhead\n0 1 2\n", "7 numbers"),
    ],
)
def test_bad_files_give_errors_that_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(InstanceFormatError, match=message):
        read_instance(path)

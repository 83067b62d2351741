"""The work without Celery: plan a depot's day, the result cache, impossible days, the
OSRM matrix provider against its fake, and the admin's map and run sheet."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import User

from devstack.fakes import osrm as osrm_fake
from routing import services
from routing.models import (
    OptimizationRun,
    Route,
    RouteVisit,
    RunStatus,
    ServicePoint,
    Vehicle,
)
from routing.osrm import osrm_matrix
from routing.svg import run_map
from tests.factories import forget_provider
from tests.routing.conftest import inline_problem

pytestmark = pytest.mark.django_db

FAST = {"time_limit": 0.5, "seed": 1}


def test_a_depot_day_is_planned_within_windows_and_capacity(depot_day):
    run = services.optimize(None, {**depot_day, **FAST})
    assert run.status == RunStatus.SUCCEEDED and run.progress == 100
    visits = RouteVisit.objects.filter(route__run=run, kind="stop")
    assert (
        sorted(v.code for v in visits) == depot_day["due"]
    )  # not S10 (inactive), S11/12 (other day)
    for v in visits.filter(code__in=["RT-S04", "RT-S08"]):
        assert dt.time(8) <= v.service_start <= dt.time(10)
    for route in run.routes.all():
        assert dt.time(7) <= route.start < route.end <= dt.time(15)
        loads = [v.load_on_arrival["kg"] for v in route.visits.all()]
        assert max(loads) + 60 <= route.vehicle.capacity_kg
    assert run.improvement_pct is not None and run.baseline["method"] == "current order"
    assert run.baseline["current_rejected"] == ""
    assert run.input_snapshot["current"] == {
        "RT-T1": ["RT-S01", "RT-S02", "RT-S03", "RT-S04", "RT-S05", "RT-S06"],
        "RT-T2": ["RT-S07", "RT-S08", "RT-S09"],
    }
    assert run.cost is not None and run.cost > 0
    assert run.stats["matrix"] == "offline"
    # ETAs are timed by departure hour (traffic); nothing in this small day breaks.
    assert run.stats["timing"] == "by departure hour" and run.stats["traffic_warnings"] == []


def test_todays_rounds_are_the_baseline_only_when_complete_and_feasible(depot_day):
    ServicePoint.objects.filter(code="RT-S09").update(current_vehicle=None)
    run = services.optimize(None, {**depot_day, **FAST})
    assert run.baseline["method"] == "nearest neighbour"
    assert run.baseline["current_rejected"] == "stops in no current round: RT-S09"

    # Everything on the small truck, which may not unload: 540 kg in 300 kg.
    small = Vehicle.objects.get(code="RT-T2")
    Vehicle.objects.filter(pk=small.pk).update(max_reloads=0)
    ServicePoint.objects.update(current_vehicle=small)
    run = services.optimize(None, {**depot_day, **FAST})
    assert run.baseline["method"] == "nearest neighbour"
    assert run.baseline["current_rejected"].startswith("infeasible: capacity for stops RT-S01")


def test_same_input_within_the_hour_is_served_from_the_cache_and_a_changed_stop_is_not(depot_day):
    first = services.optimize(None, {**depot_day, **FAST})
    second = services.optimize(None, {**depot_day, **FAST})
    assert second.cached_from_id == first.pk and second.stats["cache_hit"] is True
    assert second.cost == first.cost
    assert Route.objects.filter(run=second).count() == first.routes.count()
    assert RouteVisit.objects.filter(route__run=second).count() == 9

    ServicePoint.objects.filter(code="RT-S01").update(demand_kg=61)
    third = services.optimize(None, {**depot_day, **FAST})
    assert third.cached_from_id is None and third.input_hash != first.input_hash

    OptimizationRun.objects.filter(pk=first.pk).update(
        finished_at=first.finished_at - dt.timedelta(hours=2)
    )
    ServicePoint.objects.filter(code="RT-S01").update(demand_kg=60)
    fourth = services.optimize(None, {**depot_day, **FAST})
    assert fourth.cached_from_id is None  # the first plan is older than an hour


def test_an_impossible_day_fails_naming_each_stop_with_its_own_constraint(depot_day):
    ServicePoint.objects.filter(code="RT-S05").update(demand_kg=5000)
    # Closes before any shift starts (07:00).
    ServicePoint.objects.filter(code="RT-S04").update(
        window_start=dt.time(5), window_end=dt.time(6)
    )
    with pytest.raises(services.OptimizationFailed, match=r"capacity for stops RT-S05"):
        services.optimize(None, {**depot_day, **FAST})
    run = OptimizationRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert run.dropped == [
        {"stop": "RT-S05", "reason": "capacity"},
        {"stop": "RT-S04", "reason": "time_window"},
    ]
    assert not Route.objects.exists()


def test_a_fleet_too_small_for_the_day_says_so_with_the_totals(depot_day):
    Vehicle.objects.update(max_reloads=0)
    ServicePoint.objects.update(demand_kg=110)  # 9 x 110 = 990 kg, the fleet carries 900
    with pytest.raises(services.OptimizationFailed) as err:
        services.optimize(None, {**depot_day, **FAST})
    assert "total demand exceeds the fleet's total capacity (kg 990 > 900;" in str(err.value)
    assert OptimizationRun.objects.get().dropped == []


class Superseded(Exception):
    """What the job's guard raises once another attempt holds the job."""


def test_a_worker_that_lost_its_lease_records_neither_progress_nor_failure(depot_day):
    def lost() -> None:
        raise Superseded

    with pytest.raises(Superseded):  # at the first progress report
        services.optimize("6a1c0b7e-0000-4000-8000-000000000001", {**depot_day, **FAST}, guard=lost)
    ServicePoint.objects.filter(code="RT-S05").update(demand_kg=5000)
    with pytest.raises(Superseded):  # instead of marking the run failed
        services.optimize("6a1c0b7e-0000-4000-8000-000000000002", {**depot_day, **FAST}, guard=lost)
    for run in OptimizationRun.objects.all():
        assert run.status == RunStatus.RUNNING and run.progress == 0 and run.error == ""
    assert not Route.objects.exists()


def test_a_cancelled_run_ends_cancelled_without_routes(depot_day):
    with pytest.raises(services.OptimizationCancelled):
        services.optimize(
            None, {**depot_day, **FAST}, should_stop=lambda: True, cancelled=lambda: True
        )
    run = OptimizationRun.objects.get()
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    assert not Route.objects.exists()
    assert "best_when_cancelled" in run.stats  # the best plan so far, as figures only
    # Not the day's plan: the same input solves again instead of coming from the cache.
    again = services.optimize(None, {**depot_day, **FAST})
    assert again.status == RunStatus.SUCCEEDED and again.cached_from_id is None


def test_without_osrm_configured_an_osrm_request_uses_the_offline_matrix(settings):
    settings.TASKYARD_PROVIDERS = {
        name: spec for name, spec in settings.TASKYARD_PROVIDERS.items() if name != "osrm"
    }
    run = services.optimize(None, {"problem": inline_problem(stops=3), "matrix": "osrm", **FAST})
    assert run.status == RunStatus.SUCCEEDED
    assert run.stats["matrix"] == "offline (osrm asked for, OSRM_URL not set)"


def test_an_inline_problem_uses_the_landfill_when_the_truck_is_full():
    run = services.optimize(None, {"problem": inline_problem(stops=6), **FAST})
    (route,) = run.routes.all()
    assert route.reloads == 1 and route.stops == 6  # 300 kg with 200 kg capacity
    kinds = [v.kind for v in route.visits.all()]
    assert kinds.count("reload") == 1 and kinds[0] == "stop" and kinds[-1] == "stop"
    drawing = run_map(run)  # the legs to and from the landfill are dashed
    assert drawing.count('class="route"') == 1 and drawing.count("stroke-dasharray") == 1


@pytest.fixture
def osrm(settings):
    with osrm_fake.serve() as fake:
        providers = dict(settings.TASKYARD_PROVIDERS)
        providers["osrm"] = {**providers["osrm"], "base_url": fake.url, "timeout": 5}
        settings.TASKYARD_PROVIDERS = providers
        forget_provider("osrm")
        yield fake
        forget_provider("osrm")


def test_osrm_matrix_in_blocks_through_the_provider_guard_then_from_the_cache(osrm):
    points = [(52.0 + 0.001 * i, 5.1 + 0.001 * (i % 7)) for i in range(70)]
    distances, durations = osrm_matrix(points)
    assert osrm.count("table") == 4  # 70 points: 2 x 2 blocks of at most 50
    assert distances[0][0] == 0 and distances[3][40] == distances[40][3] > 0
    assert durations[3][40] == pytest.approx(distances[3][40] / 10, abs=1)  # the fake: 10 m/s
    assert osrm_matrix(points) == (distances, durations)
    assert osrm.count("table") == 4  # cached by coordinates


def test_an_optimisation_on_osrm_matrices(osrm):
    run = services.optimize(None, {"problem": inline_problem(stops=4), "matrix": "osrm", **FAST})
    assert run.status == RunStatus.SUCCEEDED and osrm.count("table") == 1


def test_osrm_errors_are_not_swallowed(osrm):
    osrm.fail_next(500)
    with pytest.raises(Exception, match="500"):
        osrm_matrix([(52.0, 5.1), (52.1, 5.2)])


def test_admin_shows_the_map_and_a_printable_run_sheet(client, depot_day):
    run = services.optimize(None, {**depot_day, **FAST})
    client.force_login(User.objects.create_superuser("boss", password="x"))
    page = client.get(f"/admin/routing/optimizationrun/{run.pk}/change/").content.decode()
    assert page.count('class="route"') == run.routes.count()
    assert "RT-D1 - depot" in page and "RT-F1 - facility" in page
    sheet = client.get(f"/admin/routing/optimizationrun/{run.pk}/sheet/1/").content.decode()
    route = run.routes.get(number=1)
    first = route.visits.first()
    assert "Driver" in sheet and first.code in sheet and f"{first.eta:%H:%M}" in sheet
    assert client.get(f"/admin/routing/optimizationrun/{run.pk}/sheet/99/").status_code == 404


def test_the_nightly_schedule_asks_for_one_plan_per_depot_with_pickups(depot_day):
    from queueing import Job
    from routing.tasks import plan_tomorrow

    day = dt.date.fromisoformat(depot_day["day"])
    assert services.enqueue_day(day, 5.0) == ["RT-D1"]
    job = Job.objects.get(task_name="routing.optimize_routes")
    assert job.kwargs == {"day": depot_day["day"], "depot": "RT-D1", "time_limit": 5.0}
    assert services.enqueue_day(day + dt.timedelta(days=3), 5.0) == []  # nobody due
    assert "day" in plan_tomorrow(time_limit=1.0)  # the scheduled job itself, called directly


def test_solve_vrp_prints_the_plan_and_names_bad_files(tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    instance = tmp_path / "tiny.vrp"
    instance.write_text(
        "NAME : tiny-k1\nTYPE : CVRP\nDIMENSION : 3\nEDGE_WEIGHT_TYPE : EUC_2D\nCAPACITY : 10\n"
        "NODE_COORD_SECTION\n1 0 0\n2 3 4\n3 6 8\nDEMAND_SECTION\n1 0\n2 5\n3 5\n"
        "DEPOT_SECTION\n1\n-1\nEOF\n"
    )
    out = StringIO()
    call_command("solve_vrp", str(instance), "--time-limit", "0.2", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["cost"] == 20 and result["feasible"] and len(result["routes"]) == 1
    (tmp_path / "bad.vrp").write_text("NAME : x\nTYPE : CVRP\n")
    with pytest.raises(CommandError, match="EDGE_WEIGHT_TYPE"):
        call_command("solve_vrp", str(tmp_path / "bad.vrp"))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("solve_vrp", str(tmp_path / "missing.vrp"))

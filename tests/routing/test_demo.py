"""Routing's demo rows: seeded from the demo company, idempotent, plannable, cleared."""

from __future__ import annotations

import datetime as dt

import pytest

from maintenance.demo_company import build_company
from queueing import Job
from routing import demo, services
from routing.models import Depot, Facility, OptimizationRun, RunStatus, ServicePoint, Vehicle

pytestmark = pytest.mark.django_db


def test_seed_is_idempotent_plannable_and_clear_removes_exactly_the_demo_rows(depot_day):
    company = build_company(dt.date(2026, 12, 1))
    counts = demo.seed(company)
    assert counts == {"Depot": 2, "Facility": 1, "Vehicle": 10, "ServicePoint": 300}
    assert Job.objects.filter(task_name="routing.optimize_routes").count() == 2
    assert demo.seed(company) == {"Depot": 0, "Facility": 0, "Vehicle": 0, "ServicePoint": 0}
    assert Job.objects.count() == 2  # a second seed asks for no new plan
    truck = Vehicle.objects.get(code="DEMO-T01")
    assert list(truck.reload_facilities.values_list("code", flat=True)) == ["DEMO-F1"]

    day = company.today + dt.timedelta(days=1)
    run = services.optimize(None, {"day": day.isoformat(), "depot": "DEMO-D1", "time_limit": 1})
    assert run.status == RunStatus.SUCCEEDED
    due = ServicePoint.objects.filter(depot__code="DEMO-D1", pickup_weekday=day.weekday())
    assert sum(r.stops for r in run.routes.all()) == due.count() > 0
    # Today's rounds: every due point in the round of one of the depot's trucks.
    trucks = set(Vehicle.objects.filter(depot__code="DEMO-D1").values_list("code", flat=True))
    rounds = run.input_snapshot["current"]
    assert set(rounds) == trucks
    assert sorted(s for stops in rounds.values() for s in stops) == sorted(
        due.values_list("code", flat=True)
    )
    # ... and feasible (with unloads inserted where a truck fills up): the improvement is
    # measured against them.
    assert run.baseline["method"] == "current order", run.baseline["current_rejected"]

    cleared = demo.clear()
    assert cleared["ServicePoint"] == 300 and cleared["OptimizationRun"] == 1
    assert not ServicePoint.objects.filter(code__startswith="DEMO-").exists()
    assert not Vehicle.objects.filter(is_demo=True).exists()
    assert not Depot.objects.filter(is_demo=True).exists()
    assert not Facility.objects.filter(is_demo=True).exists()
    # The non-demo rows of the fixture are untouched.
    assert ServicePoint.objects.filter(code__startswith="RT-").count() == 12
    assert Vehicle.objects.filter(code__startswith="RT-").count() == 2
    assert OptimizationRun.objects.count() == 0

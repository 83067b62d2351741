"""The admin's operator actions: plan a day for depots, run an optimisation again.
Both confirmed, offered only to whoever may enqueue the job, and audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User

from queueing import Job
from queueing.models import AuditEvent
from routing import services
from routing.models import Depot, OptimizationRun

pytestmark = pytest.mark.django_db

DEPOTS = "/admin/routing/depot/"
RUNS = "/admin/routing/optimizationrun/"


@pytest.fixture
def boss(client):
    user = User.objects.create_superuser("boss", password="x")
    client.force_login(user)
    return user


def test_plan_a_day_asks_for_the_day_then_enqueues_one_audited_job_per_depot(
    client, boss, depot_day
):
    second = Depot.objects.create(code="RT-D2", name="Second", lat=52.2, lon=5.2)
    ids = [str(Depot.objects.get(code="RT-D1").pk), str(second.pk)]
    ask = {"action": "plan_day", "_selected_action": ids}

    page = client.post(DEPOTS, ask)
    tomorrow = services.business_today() + dt.timedelta(days=1)
    assert page.status_code == 200 and 'name="day"' in page.content.decode()
    assert f'value="{tomorrow.isoformat()}"' in page.content.decode()  # tomorrow by default
    assert not Job.objects.exists()

    bad = client.post(DEPOTS, {**ask, "confirm": "yes", "day": "someday"})
    assert "Enter a valid date" in bad.content.decode() and not Job.objects.exists()

    done = client.post(DEPOTS, {**ask, "confirm": "yes", "day": depot_day["day"]}, follow=True)
    assert "queued for RT-D1, RT-D2" in done.content.decode()
    jobs = Job.objects.filter(task_name="routing.optimize_routes").order_by("kwargs__depot")
    assert [j.kwargs["depot"] for j in jobs] == ["RT-D1", "RT-D2"]
    assert all(j.kwargs["day"] == depot_day["day"] and j.enqueued_by == boss for j in jobs)
    events = AuditEvent.objects.filter(action="job.create")
    assert sorted(e.target_id for e in events) == sorted(str(j.id) for j in jobs)
    assert all(e.actor_name == "boss" and "via admin" in e.reason for e in events)


def test_run_again_is_confirmed_and_repeats_the_runs_request(client, boss, depot_day):
    run = services.optimize(None, {**depot_day, "time_limit": 0.3, "seed": 4})
    ask = {"action": "run_again", "_selected_action": [str(run.pk)]}
    page = client.post(RUNS, ask)
    assert "You are about to" in page.content.decode() and not Job.objects.exists()

    client.post(RUNS, {**ask, "confirm": "yes"})
    (job,) = Job.objects.filter(task_name="routing.optimize_routes")
    assert job.kwargs == {
        "day": depot_day["day"],
        "depot": "RT-D1",
        "time_limit": 0.3,
        "seed": 4,
        "matrix": "offline",
    }
    assert AuditEvent.objects.get(action="job.create").target_id == str(job.id)


def test_the_actions_are_offered_only_to_those_who_may_enqueue_the_job(client, depot_day):
    clerk = User.objects.create_user("clerk", password="x", is_staff=True)
    clerk.user_permissions.add(
        Permission.objects.get(codename="view_depot"),
        Permission.objects.get(codename="view_optimizationrun"),
    )
    client.force_login(clerk)
    assert "plan_day" not in client.get(DEPOTS).content.decode()
    OptimizationRun.objects.create(input_snapshot={}, input_hash="x")
    assert "run_again" not in client.get(RUNS).content.decode()
    depot = Depot.objects.get(code="RT-D1")
    client.post(
        DEPOTS,
        {
            "action": "plan_day",
            "_selected_action": [depot.pk],
            "confirm": "yes",
            "day": "2026-12-02",
        },
    )
    assert not Job.objects.exists() and not AuditEvent.objects.exists()

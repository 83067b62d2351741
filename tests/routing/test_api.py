"""The surface: POST /api/v1/queue/route-optimization end to end with a real worker, the
contract's 400s (nothing written), roles, and a worker SIGKILLed mid-solve."""

from __future__ import annotations

import os
import signal

import pytest

from queueing import Job, JobStatus
from routing.models import OptimizationRun, RunStatus
from tests.api.conftest import client_for, make_user
from tests.harness import wait_until
from tests.routing.conftest import inline_problem

URL = "/api/v1/queue/route-optimization"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "request"),
        ({"day": "2026-12-02"}, "depot"),
        ({"day": "2026-12-02", "depot": "NOPE"}, "depot"),
        ({"problem": inline_problem(), "day": "2026-12-02", "depot": "X"}, "request"),
        ({"problem": inline_problem(), "time_limit": 31}, "time_limit"),  # issue 13: 30 s
        ({"problem": inline_problem(), "time_limit": "2"}, "time_limit"),
        ({"problem": inline_problem(), "colour": "red"}, "colour"),
        ({"problem": {**inline_problem(), "stops": []}}, "problem.stops"),
    ],
)
def test_bad_payloads_are_400s_naming_the_field_and_nothing_is_written(body, field):
    response = client_for(make_user("dispatcher")).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Job.objects.exists() and not OptimizationRun.objects.exists()


@pytest.mark.django_db
def test_an_id_names_one_place_across_depots_facilities_and_stops():
    problem = inline_problem()
    problem["stops"][0]["id"] = "F"  # the landfill's id
    problem["stops"][1]["id"] = "D"  # the depot's id
    response = client_for(make_user("dispatcher")).post(URL, {"problem": problem}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["problem.stops"] == [
        "ids already used by another kind of place: D (depot), F (facility)"
    ]
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_facility_must_open_before_it_closes():
    problem = inline_problem()
    problem["facilities"][0].update(opens="17:00", closes="06:00")
    response = client_for(make_user("dispatcher")).post(URL, {"problem": problem}, format="json")
    assert response.status_code == 400
    assert "must be after opens" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_nested_mistakes_name_the_stop_or_vehicle():
    problem = inline_problem()
    problem["stops"][1]["demand"] = [1, 2]
    problem["vehicles"][0]["reload_facilities"] = ["NOPE"]
    problem["stops"][2]["window"] = ["10:00", "09:00"]
    response = client_for(make_user("manager")).post(URL, {"problem": problem}, format="json")
    assert response.status_code == 400
    text = response.content.decode()
    assert "window must open before it closes" in text
    assert not Job.objects.exists()
    problem["stops"][2].pop("window")
    text = client_for(make_user("admin")).post(URL, {"problem": problem}, format="json")
    assert "S1" in text.content.decode() and "unknown facilities NOPE" in text.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["customer", "driver"])
def test_other_roles_may_not_enqueue_or_read(role):
    client = client_for(make_user(role))
    assert client.post(URL, {"problem": inline_problem()}, format="json").status_code == 403
    assert client.get(f"{URL}/runs/1").status_code == 403
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_dispatcher_plans_a_depot_day_through_a_real_worker(celery_worker, depot_day):
    client = client_for(make_user("dispatcher"))
    # Longer than the tests' 3 s job lease: the solve must keep its lease while it runs.
    request = {"day": depot_day["day"], "depot": depot_day["depot"], "time_limit": 4}
    response = client.post(URL, request, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert response["Location"].endswith(f"/jobs/{job_id}")

    def finished():
        return Job.objects.filter(id=job_id, status=JobStatus.SUCCEEDED).exists()

    wait_until(finished, timeout=60, message=celery_worker.log)
    body = client.get(f"{URL}/jobs/{job_id}").json()
    assert body["status"] == "succeeded" and body["progress"] == 100
    stops = sorted(v["code"] for r in body["routes"] for v in r["visits"] if v["kind"] == "stop")
    assert stops == depot_day["due"]
    assert body["improvement_pct"] is not None
    assert client.get(f"{URL}/runs/{body['run_id']}").json()["routes"] == body["routes"]
    job = Job.objects.get(id=job_id)
    assert job.result["run_id"] == body["run_id"]
    assert job.attempts == 1 and OptimizationRun.objects.count() == 1

    # The same request within the hour: served from the cache, the same plan, no solve.
    again = client.post(URL, request, format="json").json()["id"]
    wait_until(
        lambda: Job.objects.filter(id=again, status=JobStatus.SUCCEEDED).exists(),
        timeout=60,
        message=celery_worker.log,
    )
    cached = client.get(f"{URL}/jobs/{again}").json()
    assert cached["cache_hit"] is True and cached["run_id"] != body["run_id"]
    assert cached["routes"] == body["routes"] and cached["cost"] == body["cost"]
    assert cached["stats"]["cache_hit"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_impossible_problem_fails_the_job_with_the_stops_named(celery_worker):
    problem = inline_problem()
    problem["stops"][2]["demand"] = [900]
    response = client_for(make_user("manager")).post(URL, {"problem": problem}, format="json")
    job_id = response.json()["id"]
    wait_until(
        lambda: Job.objects.filter(id=job_id, status=JobStatus.DEAD).exists(),
        timeout=60,
        message=celery_worker.log,
    )
    run = OptimizationRun.objects.get(job_id=job_id)
    assert run.status == RunStatus.FAILED and "capacity for stops S2" in run.error
    assert Job.objects.get(id=job_id).attempts == 1  # permanent: not retried


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_killed_mid_solve_leaves_one_finished_run(celery_worker):
    client = client_for(make_user("dispatcher"))
    body = {"problem": inline_problem(stops=30, demand=10), "time_limit": 3, "seed": 5}
    job_id = client.post(URL, body, format="json").json()["id"]

    def solving():
        run = OptimizationRun.objects.filter(job_id=job_id, progress__gt=0).first()
        return run.stats["worker_pid"] if run else None

    pid = wait_until(solving, timeout=60, interval=0.05, message=celery_worker.log)
    os.kill(pid, signal.SIGKILL)

    wait_until(
        lambda: Job.objects.filter(id=job_id, status=JobStatus.SUCCEEDED).exists(),
        timeout=90,
        message=celery_worker.log,
    )
    (run,) = OptimizationRun.objects.filter(job_id=job_id)
    assert run.status == RunStatus.SUCCEEDED and run.stats["worker_pid"] != pid
    assert OptimizationRun.objects.count() == 1
    assert Job.objects.get(id=job_id).attempts == 2
    assert sum(r.stops for r in run.routes.all()) == 30

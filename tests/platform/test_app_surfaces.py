"""An app owns its surfaces: tests/sampleapp declares a job, an endpoint and a schedule,
and the platform mounts, seeds and guards them with no edit under queueing/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from queueing.models import AuditEvent, Job
from tests.api.conftest import client_for, make_user

API = "/api/v1/queue"
SCHEDULE = "sampleapp: nightly collection plan"


@pytest.fixture
def roles(db):
    return {role: client_for(make_user(role)) for role in ("admin", "manager", "dispatcher")}


def test_the_app_endpoint_enqueues_for_its_declared_role_only(roles):
    response = roles["dispatcher"].post(
        f"{API}/sample/collections", {"route_id": 12, "note": "north"}, format="json"
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["id"])
    assert response["Location"] == f"{API}/jobs/{job.id}"
    assert (job.task_name, job.queue, job.kwargs) == (
        "sampleapp.plan_collection",
        "routing",
        {"route_id": 12, "note": "north"},
    )
    assert job.max_attempts == 2 and job.unique_key == "collection:12"
    event = AuditEvent.objects.get(action="job.create", target_id=str(job.id))
    assert event.role == "dispatcher"

    # A manager may enqueue routing jobs in general, but this job names dispatchers only.
    refused = roles["manager"].post(f"{API}/sample/collections", {"route_id": 13}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert not Job.objects.filter(kwargs__route_id=13).exists()
    # The admin may enqueue anything API-enabled.
    assert (
        roles["admin"]
        .post(f"{API}/sample/collections", {"route_id": 14}, format="json")
        .status_code
        == 202
    )
    assert client_for(None).post(f"{API}/sample/collections", {}, format="json").status_code == 401


def test_the_same_endpoint_through_post_jobs_is_guarded_the_same_way(roles):
    body = {"task": "sampleapp.plan_collection", "args": {"route_id": 20}}
    assert roles["manager"].post(f"{API}/jobs", body, format="json").status_code == 403
    assert roles["dispatcher"].post(f"{API}/jobs", body, format="json").status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "route_id"),
        ({"route_id": "twelve"}, "route_id"),
        ({"route_id": 0}, "route_id"),
        ({"route_id": 1, "colour": "red"}, "colour"),
        ({"route_id": 1, "note": "x" * 101}, "note"),
        ([1, 2], "request"),
    ],
)
def test_bad_arguments_are_a_400_naming_the_field_and_nothing_is_written(roles, body, field):
    response = roles["dispatcher"].post(f"{API}/sample/collections", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert not Job.objects.exists() and not AuditEvent.objects.exists()


def test_a_repeated_request_returns_the_job_holding_the_unique_key(roles):
    first = roles["dispatcher"].post(f"{API}/sample/collections", {"route_id": 3}, format="json")
    second = roles["dispatcher"].post(f"{API}/sample/collections", {"route_id": 3}, format="json")
    assert first.json()["id"] == second.json()["id"]
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_the_app_schedule_is_seeded_after_migrate_and_edits_survive():
    periodic = PeriodicTask.objects.get(name=SCHEDULE)  # seeded by the test DB's migrate
    assert (periodic.task, periodic.queue) == ("sampleapp.plan_collection", "routing")
    assert json.loads(periodic.kwargs) == {"route_id": 1, "note": "nightly"}
    assert (periodic.crontab.minute, periodic.crontab.hour) == ("30", "2")

    # An operator's edit in the admin is kept by the next seeding (a deploy's migrate).
    periodic.enabled = False
    periodic.kwargs = json.dumps({"route_id": 2})
    periodic.save()
    call_command("seed_schedules")
    periodic.refresh_from_db()
    assert periodic.enabled is False and json.loads(periodic.kwargs) == {"route_id": 2}

    # Deleted, it comes back once, not twice.
    periodic.delete()
    call_command("seed_schedules")
    call_command("seed_schedules")
    assert PeriodicTask.objects.filter(name=SCHEDULE).count() == 1


def test_the_app_is_in_the_schema(roles):
    schema = roles["admin"].get("/api/schema/?format=json")
    assert schema.status_code == 200
    operation = schema.json()["paths"]["/api/v1/queue/sample/collections"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PlanCollectionArgsRequest"}


def test_nothing_under_queueing_names_the_sample_app():
    queueing_dir = Path(settings.BASE_DIR) / "queueing"
    mentions = [
        str(path)
        for path in queueing_dir.rglob("*.py")
        if "sampleapp" in path.read_text() or "sample/collections" in path.read_text()
    ]
    assert mentions == []

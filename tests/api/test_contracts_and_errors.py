"""Bad requests get a 400 (or 413/415) with field errors in the one error shape, and
nothing is written or published."""

from __future__ import annotations

import json

import pytest

from queueing.models import AuditEvent, Job

API = "/api/v1/queue"


def post_job(client, body, **extra):
    return client.post(f"{API}/jobs", body, format="json", **extra)


@pytest.fixture
def admin(clients):
    return clients["admin"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"task": "tests.record", "args": {"key": ["not", "a", "string"]}},
            "args.key",
            "must be a string",
        ),
        (
            {"task": "tests.record", "args": {"key": "k", "seconds": "1.5"}},
            "args.seconds",
            "must be a number",  # no coercion of strings to numbers
        ),
        (
            {"task": "tests.record", "args": {"key": "k", "seconds": 999}},
            "args.seconds",
            "less than or equal to 60",
        ),
        ({"task": "tests.record", "args": {}}, "args.key", "required"),
        (
            {"task": "tests.record", "args": {"key": "k", "colour": "red"}},
            "args.colour",
            "unknown argument",
        ),
        ({"task": "tests.record", "args": ["k"]}, "args", "object of named arguments"),
        ({"task": "no.such.task"}, "task", "no API-enabled task"),
        # Registered but not API-enabled: the same answer as an unknown task.
        ({"task": "tests.slow_run", "args": {}}, "task", "no API-enabled task"),
        ({"task": "queueing.ping", "priority": 12}, "priority", "less than or equal to 9"),
        ({"task": "queueing.ping", "priority": "high"}, "priority", "valid integer"),
        ({"task": "queueing.ping", "countdown": -1}, "countdown", "greater than or equal to 0"),
        ({"task": "queueing.ping", "queue": "nope"}, "queue", "not a valid choice"),
        (
            {"task": "queueing.ping", "countdown": 5, "run_at": "2030-01-01T00:00:00Z"},
            "run_at",
            "not both",
        ),
        ({"task": "queueing.ping", "run_at": "tomorrow"}, "run_at", "wrong format"),
        ({"task": "queueing.ping", "retries": 3}, "retries", "unknown field"),
        ({}, "task", "required"),
    ],
)
def test_bad_job_requests_get_field_errors_and_write_nothing(admin, body, field, words):
    response = post_job(admin, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert any(words in message for message in error["fields"][field]), error
    assert Job.objects.count() == 0
    assert AuditEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_valid_contract_call_is_accepted_with_its_typed_arguments(admin):
    response = post_job(
        admin,
        {
            "task": "tests.record",
            "args": {"key": "k", "seconds": 1.5},
            "queue": "isolated",
            "priority": 1,
        },
    )
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["id"])
    assert (job.kwargs, job.queue, job.priority) == ({"key": "k", "seconds": 1.5}, "isolated", 1)
    assert response["Location"] == f"{API}/jobs/{job.id}"


@pytest.mark.django_db(transaction=True)
def test_malformed_huge_and_non_json_bodies(admin, settings):
    malformed = admin.post(f"{API}/jobs", "{not json", content_type="application/json")
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_request"

    form = admin.post(
        f"{API}/jobs", "task=queueing.ping", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"

    huge = json.dumps({"task": "queueing.ping", "args": {"message": "x" * (600 * 1024)}})
    too_big = admin.post(f"{API}/jobs", huge, content_type="application/json")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "request_too_large"

    # Under the request limit but over the task's field limit: a field error.
    long = admin.post(
        f"{API}/jobs", {"task": "queueing.ping", "args": {"message": "x" * 300}}, format="json"
    )
    assert long.status_code == 400 and "args.message" in long.json()["error"]["fields"]
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_unknown_paths_methods_and_ids_answer_in_the_error_shape(admin):
    for response, status, code in [
        (admin.get("/api/v1/queue/nothing-here/at/all"), 404, "not_found"),
        (admin.get("/api/v2/jobs"), 404, "not_found"),
        (admin.delete(f"{API}/status"), 405, "method_not_allowed"),
        (admin.get(f"{API}/jobs/00000000-0000-0000-0000-000000000000"), 404, "not_found"),
        (admin.get(f"{API}/stats/no-such-queue"), 404, "not_found"),
        (admin.post(f"{API}/no-such-queue/pause", {}, format="json"), 404, "not_found"),
        (admin.get(f"{API}/metrics?minutes=0"), 400, "invalid"),
        (admin.get(f"{API}/jobs?status=exploded"), 400, "invalid"),
        (admin.get(f"{API}/dead-letters?reviewed=maybe"), 400, "invalid"),
    ]:
        assert response.status_code == status, response.content
        body = response.json()
        assert body["error"]["code"] == code
        assert "Traceback" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_cancel_twice_and_retry_a_finished_job_are_conflicts(admin):
    created = post_job(admin, {"task": "queueing.ping", "queue": "isolated", "countdown": 600})
    job_id = created.json()["id"]
    first = admin.post(f"{API}/jobs/{job_id}/cancel", {"reason": "typo"}, format="json")
    assert first.json() == {"job": job_id, "status": "cancelled", "outcome": "cancelled"}
    again = admin.post(f"{API}/jobs/{job_id}/cancel", {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    # A cancelled job retried: a copy is enqueued, linked to it.
    retried = admin.post(f"{API}/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["replay_of"] == job_id and retried.json()["status"] == "queued"
    Job.objects.filter(id=retried.json()["id"]).update(status="succeeded")
    finished = admin.post(f"{API}/jobs/{retried.json()['id']}/retry")
    assert finished.status_code == 409


@pytest.mark.parametrize("query", ["task=%00", "queue=a%00b", "fingerprint=%00x"])
def test_a_nul_character_in_a_filter_is_a_400_on_every_database(clients, query):
    response = clients["admin"].get(f"/api/v1/queue/dead-letters?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"

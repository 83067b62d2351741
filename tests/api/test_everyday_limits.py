"""Issue 11, finding 6: limits that fit real use, strict argument types, unknown filters
refused, and a list of the tasks a caller may run."""

from __future__ import annotations

import pytest

API = "/api/v1/queue"


@pytest.mark.django_db(transaction=True)
def test_an_admin_polling_during_an_incident_is_not_locked_out(clients, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "5/15m"}
    statuses = {clients["admin"].get(f"{API}/status").status_code for _ in range(20)}
    assert statuses == {200}


@pytest.mark.django_db(transaction=True)
def test_reads_and_writes_have_separate_budgets(clients, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "3/15m"}
    manager = clients["manager"]
    assert [manager.get(f"{API}/status").status_code for _ in range(4)] == [200] * 3 + [429]
    created = manager.post(
        f"{API}/jobs", {"task": "queueing.ping", "countdown": 600}, format="json"
    )
    assert created.status_code == 202  # the write budget is untouched by reads


@pytest.mark.django_db(transaction=True)
def test_refused_requests_do_not_spend_the_creation_budget(clients, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "job_create": "2/m"}
    dispatcher = clients["dispatcher"]
    bad = {"task": "queueing.ping", "args": {"message": 123}}
    assert [dispatcher.post(f"{API}/jobs", bad, format="json").status_code for _ in range(3)] == [
        400
    ] * 3
    good = {"task": "queueing.ping", "countdown": 600}
    statuses = [dispatcher.post(f"{API}/jobs", good, format="json").status_code for _ in range(3)]
    assert statuses == [202, 202, 429]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"message": 123}, "args.message"),
        ({"message": True}, "args.message"),
        ({"message": ["a"]}, "args.message"),
    ],
)
def test_argument_types_are_not_coerced(clients, args, field):
    response = clients["admin"].post(
        f"{API}/jobs", {"task": "queueing.ping", "args": args}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_a_route_id_given_as_a_string_is_refused(clients):
    body = {"task": "sampleapp.plan_collection", "args": {"route_id": "12"}}
    response = clients["dispatcher"].post(f"{API}/jobs", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["args.route_id"] == ["must be an integer"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("jobs?queue=bins", "queue"),
        ("jobs?colour=red", "colour"),
        ("dead-letters?reason=nope", "reason"),
        ("dead-letters?queue=bins", "queue"),
        ("dead-letters?colour=red", "colour"),
        ("stats?window=5", "window"),
        ("providers?x=1", "x"),
        ("status?verbose=1", "verbose"),
    ],
)
def test_unknown_filters_and_parameters_are_a_400(clients, path, field):
    response = clients["admin"].get(f"{API}/{path}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_the_tasks_a_caller_may_run_with_their_argument_schemas(clients):
    dispatcher = clients["dispatcher"].get(f"{API}/tasks").json()
    names = {entry["task"] for entry in dispatcher["tasks"]}
    assert {"queueing.ping", "sampleapp.plan_collection"} <= names
    assert "queueing.prune_jobs" not in names and dispatcher["may_choose_queue"] is False
    plan = next(e for e in dispatcher["tasks"] if e["task"] == "sampleapp.plan_collection")
    assert plan["queue"] == "routing"
    assert plan["args"]["properties"]["route_id"] == {"type": "integer", "minimum": 1}
    assert plan["args"]["required"] == ["route_id"]
    assert plan["args"]["additionalProperties"] is False
    admin = clients["admin"].get(f"{API}/tasks").json()
    assert "queueing.prune_jobs" in {e["task"] for e in admin["tasks"]}
    assert admin["may_choose_queue"] is True
    assert clients["customer"].get(f"{API}/tasks").json()["tasks"] == []

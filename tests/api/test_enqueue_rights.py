"""What enqueue lets a caller do (issue 11, findings 1, 2 and 6): a unique key never
reaches a job the caller could not read and operate, a queue is chosen only with the
right to, and a de-duplicated enqueue says so."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from queueing.models import AuditEvent, Job, JobStatus
from tests.api.conftest import client_for

API = "/api/v1/queue"
PING = {"task": "queueing.ping", "countdown": 3600}


def person(name: str, role: str):
    user = User.objects.create_user(name, password="x")
    user.groups.add(Group.objects.get(name=role))
    return client_for(user)


@pytest.fixture
def people(db):
    return {
        "a": person("dispatcher-a", "dispatcher"),
        "b": person("dispatcher-b", "dispatcher"),
        "manager": person("manager-m", "manager"),
        "admin": person("admin-x", "admin"),
    }


def post(client, body: dict):
    return client.post(f"{API}/jobs", body, format="json")


def test_another_users_key_is_a_409_that_reveals_nothing(people):
    held = post(people["b"], {**PING, "unique_key": "route-42"})
    assert held.status_code == 202
    holder = held.json()["id"]
    for on_conflict in ("keep", "replace"):
        refused = post(people["a"], {**PING, "unique_key": "route-42", "on_conflict": on_conflict})
        assert refused.status_code == 409, refused.content
        assert holder not in refused.content.decode()
    assert Job.objects.get(id=holder).status == JobStatus.SCHEDULED
    assert Job.objects.count() == 1


def test_an_admins_job_cannot_be_replaced_by_a_dispatcher(people):
    admin_job = post(people["admin"], {**PING, "unique_key": "nightly"}).json()["id"]
    refused = post(people["a"], {**PING, "unique_key": "nightly", "on_conflict": "replace"})
    assert refused.status_code == 409
    assert Job.objects.get(id=admin_job).status == JobStatus.SCHEDULED
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


def test_a_manager_may_see_but_not_replace_a_dispatchers_job(people):
    theirs = post(people["b"], {**PING, "unique_key": "k"}).json()["id"]
    kept = post(people["manager"], {**PING, "unique_key": "k"})
    assert kept.status_code == 200 and kept.json()["id"] == theirs
    replaced = post(people["manager"], {**PING, "unique_key": "k", "on_conflict": "replace"})
    assert replaced.status_code == 409


def test_a_deduplicated_enqueue_is_a_200_naming_the_existing_job(people):
    first = post(people["a"], {**PING, "unique_key": "once"})
    again = post(people["a"], {**PING, "unique_key": "once"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["deduplicated"] is True and again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]


def test_replacing_ones_own_job_audits_the_cancel_as_its_own_event(people):
    old = post(people["a"], {**PING, "unique_key": "debounce"}).json()["id"]
    new = post(people["a"], {**PING, "unique_key": "debounce", "on_conflict": "replace"})
    assert new.status_code == 202 and new.json()["id"] != old
    assert Job.objects.get(id=old).status == JobStatus.CANCELLED
    cancel = AuditEvent.objects.get(action="job.cancel", target_id=old)
    assert cancel.actor_name == "dispatcher-a" and "replaced" in cancel.reason


def test_keys_are_scoped_by_task_and_queue(people):
    ping = post(people["admin"], {**PING, "unique_key": "k"})
    plan = {"task": "sampleapp.plan_collection", "args": {"route_id": 3}, "countdown": 3600}
    other_task = post(people["admin"], {**plan, "unique_key": "k"})
    other_queue = post(people["admin"], {**PING, "unique_key": "k", "queue": "isolated"})
    assert {r.status_code for r in (ping, other_task, other_queue)} == {202}
    assert len({r.json()["id"] for r in (ping, other_task, other_queue)}) == 3


def test_naming_another_queue_needs_the_right_to(people):
    refused = post(people["a"], {**PING, "queue": "routing"})
    assert refused.status_code == 403
    assert "may not send it to another queue" in refused.content.decode()
    assert post(people["admin"], {**PING, "queue": "isolated"}).status_code == 202
    # Prune is admin-only, on any queue.
    assert post(people["manager"], {"task": "queueing.prune_jobs"}).status_code == 403

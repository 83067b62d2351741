"""Issue 11, finding 5: staff access alone opens nothing; the role decides, as in the API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from queueing.models import AuditEvent, Job

pytestmark = pytest.mark.django_db


def staff(name: str, role: str | None = None) -> Client:
    user = User.objects.create_user(name, password="x", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_staff_without_a_role_sees_no_dashboard_and_runs_no_demo():
    bare = staff("bare")
    assert bare.get("/admin/queueing/dashboard/").status_code == 403
    assert bare.get("/admin/queueing/providers/").status_code == 403
    assert bare.post("/queueing/demo/", {"message": "hi"}).status_code == 403
    assert not Job.objects.exists()


def test_a_demo_enqueue_records_the_user_and_an_audit_event():
    manager = staff("manager-staff", "manager")
    assert manager.get("/admin/queueing/dashboard/").status_code == 200
    response = manager.post("/queueing/demo/", {"message": "hi"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["task_id"])
    assert job.enqueued_by.username == "manager-staff"
    event = AuditEvent.objects.get(action="job.create", target_id=str(job.id))
    assert event.reason == "via demo page" and event.role == "manager"


def test_the_demo_status_page_shows_only_ones_own_jobs():
    first = staff("dispatcher-one", "dispatcher")
    other = staff("dispatcher-two", "dispatcher")
    task_id = first.post(
        "/queueing/demo/", {"message": "mine"}, HTTP_ACCEPT="application/json"
    ).json()["task_id"]
    assert (
        first.get(f"/queueing/demo/{task_id}/", HTTP_ACCEPT="application/json").status_code == 200
    )
    assert (
        other.get(f"/queueing/demo/{task_id}/", HTTP_ACCEPT="application/json").status_code == 404
    )

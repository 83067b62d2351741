"""A view calls a task with .delay(); a real worker process runs it; the result is
readable through AsyncResult and in the django-celery-results table."""

from __future__ import annotations

import json

import pytest
from celery.result import AsyncResult
from django_celery_results.models import TaskResult

from tests.harness import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.worker
def test_task_from_view_runs_on_real_worker_and_result_is_stored(admin_client, celery_worker):
    response = admin_client.post(
        "/queueing/demo/", {"message": "bins out on Tuesday"}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert response["Location"] == f"/queueing/demo/{task_id}/"

    # Ran in the worker process we started, not eagerly in this one.
    value = AsyncResult(task_id).get(timeout=30)
    assert value == {"message": "bins out on Tuesday", "worker": celery_worker.name}

    row = TaskResult.objects.get(task_id=task_id)
    assert row.status == "SUCCESS"
    assert row.task_name == "queueing.ping"
    assert row.worker == celery_worker.name
    assert json.loads(row.result) == value
    assert "bins out on Tuesday" in row.task_args  # result_extended keeps the arguments

    status = admin_client.get(f"/queueing/demo/{task_id}/", HTTP_ACCEPT="application/json")
    assert status.json() == {"task_id": task_id, "state": "SUCCESS", "result": value}


@pytest.mark.worker
def test_status_page_shows_the_result_to_a_browser(admin_client, celery_worker):
    response = admin_client.post("/queueing/demo/", {"message": "route 7 done"})
    assert response.status_code == 302
    status_url = response["Location"]

    page = wait_until(
        lambda: (
            (r := admin_client.get(status_url)).status_code == 200
            and "SUCCESS" in r.content.decode()
            and r
        ),
        timeout=30,
        message="the status page to show SUCCESS",
    )
    assert f"route 7 done (ran on {celery_worker.name})" in page.content.decode()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("", "message: this field is required"),
        ("   ", "message: this field is required"),
        ("x" * 201, "message: at most 200 characters"),
    ],
)
def test_bad_demo_input_is_refused_and_nothing_is_published(
    admin_client, published, message, error
):
    response = admin_client.post(
        "/queueing/demo/", {"message": message}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": error}}
    assert published == []


def test_demo_needs_a_staff_login(client, django_user_model, published):
    assert client.post("/queueing/demo/", {"message": "hi"}).status_code == 302
    user = django_user_model.objects.create_user("driver", password="pw-driver-123")
    client.force_login(user)
    response = client.post("/queueing/demo/", {"message": "hi"})
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert published == []


def test_status_of_a_malformed_task_id_is_404(admin_client):
    assert admin_client.get("/queueing/demo/not-a-uuid/").status_code == 404

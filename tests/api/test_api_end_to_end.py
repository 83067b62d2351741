"""A job created over HTTP runs on a real worker and its result is read back over HTTP."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.harness import wait_until


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_job_posted_over_the_api_runs_and_reports_back(celery_worker, users):
    client = APIClient()
    tokens = client.post(
        "/api/token/",
        {"username": "admin-user", "password": "correct horse battery"},
        format="json",
    ).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

    created = client.post(
        "/api/v1/queue/jobs",
        {"task": "queueing.ping", "args": {"message": "over http"}},
        format="json",
    )
    assert created.status_code == 202
    location = created["Location"]

    def finished() -> dict | None:
        job = client.get(location).json()
        return job if job["status"] == "succeeded" else None

    job = wait_until(finished, timeout=30, interval=0.3, message=celery_worker.log)
    assert job["result"]["message"] == "over http"
    assert job["result"]["worker"] == celery_worker.name
    assert job["attempts"] == 1
    assert [reason["code"] for reason in job["explain"]] == ["finished"]
    assert job["attempt_history"][0]["outcome"] == "succeeded"
    assert job["enqueued_by"] == "admin-user"

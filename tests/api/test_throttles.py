"""Throttles hold per user across requests (Redis): the 21st job creation in a minute
gets a 429 with Retry-After, and other users are not affected."""

from __future__ import annotations

import pytest

from queueing.models import Job

API = "/api/v1/queue"


@pytest.mark.django_db(transaction=True)
def test_the_21st_job_creation_in_a_minute_is_refused(clients):
    body = {"task": "queueing.ping", "countdown": 600}
    for n in range(20):
        response = clients["dispatcher"].post(f"{API}/jobs", body, format="json")
        assert response.status_code == 202, (n, response.content)
    refused = clients["dispatcher"].post(f"{API}/jobs", body, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert Job.objects.count() == 20
    # Reading is not a creation, and another user has their own budget.
    assert clients["dispatcher"].get(f"{API}/jobs").status_code == 200
    other = clients["manager"].post(f"{API}/jobs", body, format="json")
    assert other.status_code == 202


@pytest.mark.django_db(transaction=True)
def test_general_and_admin_operation_limits(clients, settings):
    settings.API_THROTTLE_RATES = {
        **settings.API_THROTTLE_RATES,
        "read": "5/15m",
        "admin_ops": "2/5m",
    }
    statuses = [clients["manager"].get(f"{API}/status").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]

    admin = clients["admin"]
    ops = [
        admin.post(f"{API}/isolated/{verb}", {}, format="json").status_code
        for verb in ("pause", "resume", "pause")
    ]
    assert ops == [200, 200, 429]
    from queueing.control.pause import resume_queue

    resume_queue("isolated")

"""Issue 11, findings 3 and 4: no input reaches a 500, login throttling cannot be reset
by a forged X-Forwarded-For, and tokens follow the account (rotation, deletion, password
change)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework.test import APIClient

from tests.api.conftest import client_for

API = "/api/v1/queue"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def admin(db):
    user = User.objects.create_user("admin-h", password="correct horse battery")
    user.groups.add(Group.objects.get(name="admin"))
    return user


@pytest.mark.parametrize("depth", [40, 5000])
@pytest.mark.parametrize("path", ["/api/token/", "/api/token/refresh/", f"{API}/jobs"])
def test_deeply_nested_json_is_a_400_everywhere(admin, path, depth):
    client = client_for(admin) if path.endswith("/jobs") else APIClient()
    body = '{"task": "queueing.ping", "args": ' + nested(depth) + "}"
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"]["code"] in ("malformed_request", "invalid", "parse_error")


def test_a_recurring_job_with_a_taken_name_is_a_400(admin):
    schedule = IntervalSchedule.objects.create(every=60, period="seconds")
    PeriodicTask.objects.create(name="nightly", task="queueing.ping", interval=schedule)
    client = client_for(admin)
    body = {"name": "nightly", "task": "queueing.ping", "every_seconds": 600}
    assert client.post(f"{API}/jobs/recurring", body, format="json").status_code == 400
    other = client.post(f"{API}/jobs/recurring", {**body, "name": "other"}, format="json")
    assert other.status_code == 201
    renamed = client.patch(
        f"{API}/jobs/recurring/{other.json()['id']}", {"name": "nightly"}, format="json"
    )
    assert renamed.status_code == 400


def login(client: APIClient, username: str, password: str, **extra):
    body = {"username": username, "password": password}
    return client.post("/api/token/", body, format="json", **extra)


@pytest.mark.django_db(transaction=True)
def test_forwarded_for_does_not_reset_the_address_budget(settings, admin):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login_address": "3/15m"}
    client = APIClient()
    statuses = [
        login(client, f"nobody-{n}", "x", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code
        for n in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    # The right password from "another" forwarded address is still refused: same client.
    right = login(client, "admin-h", "correct horse battery", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert right.status_code == 429


@pytest.mark.django_db(transaction=True)
def test_an_account_has_its_own_budget_whatever_the_address(settings, admin):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login_account": "3/15m"}
    statuses = [
        login(APIClient(), "admin-h", "wrong", REMOTE_ADDR=f"192.0.2.{n}").status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    assert login(APIClient(), "someone-else", "wrong").status_code == 401


def test_refresh_rotates_and_the_old_refresh_token_is_refused(admin):
    client = APIClient()
    tokens = login(client, "admin-h", "correct horse battery").json()
    first = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert first.status_code == 200 and first.json()["refresh"] != tokens["refresh"]
    again = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert again.status_code == 401


def test_a_deleted_users_refresh_token_is_a_401(admin):
    client = APIClient()
    tokens = login(client, "admin-h", "correct horse battery").json()
    admin.delete()
    refused = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refused.status_code == 401


def test_a_password_change_refuses_older_tokens(admin):
    client = APIClient()
    tokens = login(client, "admin-h", "correct horse battery").json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get(f"{API}/status").status_code == 200
    admin.set_password("a brand new password")
    admin.save()
    assert client.get(f"{API}/status").status_code == 401
    body = json.dumps({"refresh": tokens["refresh"]})
    refreshed = APIClient().post("/api/token/refresh/", body, content_type="application/json")
    assert refreshed.status_code == 401

"""Every role x endpoint x method gets exactly the status the role table specifies
(queueing/roles.py), and every mutating call that succeeds leaves exactly one audit
event while a refused one leaves none.

Each call gets fresh targets (jobs, dead letters, schedules), so one role's call cannot
change what the next role sees.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

import queueing
from queueing.control.pause import resume_queue
from queueing.models import Alert, AuditEvent, Job
from tests.api.conftest import ROLES
from tests.factories import dead_letter_row, external_assets

API = "/api/v1/queue"
EVERYONE = dict.fromkeys(ROLES, 200)
ROUTE_IDS = itertools.count(1000)
ENQUEUERS = {"admin": 202, "manager": 202, "dispatcher": 202, "customer": 403, "driver": 403}


def scheduled_job(users) -> Job:
    """A job on routing, enqueued by the admin, waiting an hour (nothing runs it)."""
    return queueing.enqueue("queueing.ping", queue="routing", countdown=3600, user=users["admin"])


def held_by_admin(users) -> str:
    """The jobs URL, with an admin's waiting job holding ping's unique key "held"."""
    queueing.enqueue(
        "queueing.ping",
        unique_key="queueing.ping@default:held",
        countdown=3600,
        user=users["admin"],
    )
    return f"{API}/jobs"


def recurring(users) -> PeriodicTask:
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="4")
    return PeriodicTask.objects.create(
        name=f"nightly-{timezone.now().timestamp()}", task="queueing.ping", crontab=crontab
    )


def open_alert() -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        key=f"backlog:matrix-{next(ROUTE_IDS)}",
        kind="backlog",
        queue="routing",
        message="matrix",
        opened_at=now,
        last_seen_at=now,
    )


def finished_backup():
    """A verified backup in the catalogue (no file: nothing runs the verification)."""
    from maintenance.models import Backup, BackupStatus

    return Backup.objects.create(
        path=f"/nonexistent/backup-{next(ROUTE_IDS)}.sqlite3",
        vendor="sqlite",
        status=BackupStatus.VERIFIED,
    )


@dataclass
class Call:
    method: str
    path: Callable[[dict], str] | str
    body: dict | Callable[[], dict] | None
    expected: dict[str, int]  # role -> status; anonymous is 401 unless given
    mutating: bool = False

    def url(self, users) -> str:
        return self.path if isinstance(self.path, str) else self.path(users)

    def data(self) -> dict | None:
        """The body; a callable gives a fresh one per role (say, a new unique key)."""
        return self.body() if callable(self.body) else self.body


def only(codes: dict[str, int], default: int = 403) -> dict[str, int]:
    return {role: codes.get(role, default) for role in ROLES}


STATS = only({"admin": 200, "manager": 200})
PING = {"task": "queueing.ping", "args": {"message": "matrix"}}

CALLS = [
    Call("get", f"{API}/health", None, {**EVERYONE, "anonymous": 200}),
    Call("get", f"{API}/status", None, STATS),
    Call("get", f"{API}/stats", None, STATS),
    Call("get", f"{API}/stats/routing", None, STATS),
    Call("get", f"{API}/metrics?minutes=5", None, STATS),
    # Creating jobs: the task's declared roles decide (ping: manager, dispatcher; admin
    # always), on the task's own queue; sending it elsewhere needs override_queue.
    Call("post", f"{API}/jobs", {**PING}, ENQUEUERS, mutating=True),
    *(
        Call("post", f"{API}/jobs", {**PING, "queue": queue}, only({"admin": 202}), mutating=True)
        for queue in ("routing", "billing", "notifications", "maintenance")
    ),
    # A unique key held by an admin's job: those who may read that job get it back (200,
    # nothing created); a dispatcher, who may not, gets a 409 that names nothing.
    Call(
        "post",
        held_by_admin,
        {**PING, "unique_key": "held"},
        {**ENQUEUERS, "admin": 200, "manager": 200, "dispatcher": 409},
    ),
    # A maintenance task is admin-only, whatever queue the caller names.
    Call(
        "post", f"{API}/jobs", {"task": "queueing.prune_jobs"}, only({"admin": 202}), mutating=True
    ),
    Call(
        "post",
        f"{API}/jobs",
        {"task": "queueing.prune_jobs", "queue": "routing"},
        only({"admin": 202}),
        mutating=True,
    ),
    Call("get", f"{API}/jobs", None, only({"admin": 200, "manager": 200, "dispatcher": 200})),
    # Someone else's job: a dispatcher sees only their own (404, not 403: no leak).
    Call(
        "get",
        lambda u: f"{API}/jobs/{scheduled_job(u).id}",
        None,
        only({"admin": 200, "manager": 200, "dispatcher": 404}),
    ),
    Call(
        "post",
        lambda u: f"{API}/jobs/{scheduled_job(u).id}/cancel",
        {},
        only({"admin": 200, "manager": 200, "dispatcher": 404}),
        mutating=True,
    ),
    Call(
        "post",
        lambda u: f"{API}/jobs/{scheduled_job(u).id}/retry",
        None,
        only({"admin": 202, "manager": 202, "dispatcher": 404}),
        mutating=True,
    ),
    Call("get", f"{API}/jobs/recurring", None, only({"admin": 200})),
    Call(
        "post",
        f"{API}/jobs/recurring",
        {"name": "matrix", "task": "queueing.ping", "every_seconds": 600},
        only({"admin": 201}),
        mutating=True,
    ),
    Call("get", lambda u: f"{API}/jobs/recurring/{recurring(u).id}", None, only({"admin": 200})),
    Call(
        "patch",
        lambda u: f"{API}/jobs/recurring/{recurring(u).id}",
        {"enabled": False},
        only({"admin": 200}),
        mutating=True,
    ),
    Call(
        "delete",
        lambda u: f"{API}/jobs/recurring/{recurring(u).id}",
        None,
        only({"admin": 204}),
        mutating=True,
    ),
    Call(
        "post", f"{API}/isolated/pause", {"reason": "matrix"}, only({"admin": 200}), mutating=True
    ),
    Call("post", f"{API}/isolated/resume", {}, only({"admin": 200}), mutating=True),
    Call(
        "post",
        f"{API}/isolated/clean",
        {"status": "succeeded", "older_than_seconds": 60},
        only({"admin": 200}),
        mutating=True,
    ),
    Call("get", f"{API}/routing/jobs", None, STATS),
    Call("get", f"{API}/dead-letters", None, STATS),
    Call(
        "post",
        lambda u: f"{API}/dead-letters/{dead_letter_row(enqueued_by=u['admin']).id}/review",
        {"note": "seen"},
        only({"admin": 200}),
        mutating=True,
    ),
    Call(
        "post",
        lambda u: f"{API}/dead-letters/{dead_letter_row(enqueued_by=u['admin']).id}/replay",
        None,
        only({"admin": 202}),
        mutating=True,
    ),
    Call(
        "post",
        f"{API}/dead-letters/replay",
        {"queue": "routing", "dry_run": False},
        only({"admin": 200}),
        mutating=True,
    ),
    # Alerts: read with the stats; answered by those who operate queues.
    Call("get", f"{API}/alerts", None, STATS),
    *(
        Call(
            "post",
            lambda u, action=action: f"{API}/alerts/{open_alert().id}/{action}",
            body,
            only({"admin": 200}),
            mutating=True,
        )
        for action, body in (
            ("acknowledge", {"note": "on it"}),
            ("snooze", {"minutes": 30}),
            ("unacknowledge", None),
        )
    ),
    # Maintenance jobs run now (maintenance/api.py, queueing's through /jobs): admins only.
    Call("post", f"{API}/maintenance/backup", {"verify": False}, only({"admin": 202}), True),
    Call("post", f"{API}/maintenance/upkeep", {}, only({"admin": 202}), mutating=True),
    Call(
        "post",
        f"{API}/maintenance/verify-backup",
        lambda: {"backup_id": finished_backup().pk},
        only({"admin": 202}),
        mutating=True,
    ),
    *(
        Call("post", f"{API}/jobs", {"task": task}, only({"admin": 202}), mutating=True)
        for task in ("queueing.daily_report", "queueing.snapshot_queue_stats")
    ),
    # An app's own endpoint (tests/sampleapp/api.py): the roles its job declares, only.
    Call(
        "post",
        f"{API}/sample/collections",
        lambda: {"route_id": next(ROUTE_IDS)},  # its unique key is per route: a fresh one
        only({"admin": 202, "dispatcher": 202}),
        mutating=True,
    ),
]


def call_id(call: Call) -> str:
    path = call.path if isinstance(call.path, str) else "{id}:" + call.path.__code__.co_names[0]
    return f"{call.method.upper()} {path.removeprefix(API)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("call", CALLS, ids=call_id)
def test_every_role_gets_the_specified_status(call, users, clients):
    try:
        for who in ("anonymous", *ROLES):
            expected = call.expected.get(who, 401) if who == "anonymous" else call.expected[who]
            url = call.url(users)
            events_before = AuditEvent.objects.count()
            response = getattr(clients[who], call.method)(url, call.data(), format="json")
            assert response.status_code == expected, (
                f"{who}: {call.method.upper()} {url} -> {response.status_code}, expected "
                f"{expected}: {response.content[:300]!r}"
            )
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "fields"}
            new_events = AuditEvent.objects.count() - events_before
            succeeded = response.status_code < 300
            assert new_events == (1 if call.mutating and succeeded else 0), (
                f"{who}: {call.method.upper()} {url} wrote {new_events} audit events"
            )
            if new_events:
                event = AuditEvent.objects.order_by("-id").first()
                assert event.actor_name == f"{who}-user" and event.role == who
                assert event.ip == "127.0.0.1"
    finally:
        resume_queue("isolated")


@pytest.mark.django_db(transaction=True)
def test_a_dispatcher_sees_their_own_jobs_and_no_one_elses(users, clients):
    theirs = queueing.enqueue(
        "queueing.ping", queue="routing", countdown=3600, user=users["dispatcher"]
    )
    others = scheduled_job(users)
    listed = clients["dispatcher"].get(f"{API}/jobs").json()["results"]
    assert [job["id"] for job in listed] == [str(theirs.id)]
    assert clients["dispatcher"].get(f"{API}/jobs/{theirs.id}").status_code == 200
    assert clients["dispatcher"].get(f"{API}/jobs/{others.id}").status_code == 404
    manager_view = clients["manager"].get(f"{API}/jobs").json()["results"]
    assert {job["id"] for job in manager_view} == {str(theirs.id), str(others.id)}


@pytest.mark.django_db(transaction=True)
def test_jwt_obtain_and_refresh_then_use(users):
    from rest_framework.test import APIClient

    client = APIClient()
    bad = client.post("/api/token/", {"username": "admin-user", "password": "wrong"}, format="json")
    assert bad.status_code == 401
    tokens = client.post(
        "/api/token/",
        {"username": "admin-user", "password": "correct horse battery"},
        format="json",
    ).json()
    refreshed = client.post(
        "/api/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    ).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed['access']}")
    assert client.get(f"{API}/status").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert client.get(f"{API}/status").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_schema_and_docs_need_a_login_and_use_no_cdn(clients):
    assert clients["anonymous"].get("/api/schema/").status_code == 401
    assert clients["customer"].get("/api/schema/").status_code == 200
    docs = clients["admin"].get("/api/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert external_assets(page) == [] and "/static/drf_spectacular_sidecar/" in page


def test_the_health_answer_leaks_nothing(client, db):
    assert client.get(f"{API}/health").json() == {"status": "ok"}

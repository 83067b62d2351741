"""The data sync's API (who may start a sync, strict arguments, run history, the
conflict queue), its admin pages (CSV upload, misdeclared sources refused, both
versions of a conflict side by side, resolving), its schedules and its demo rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import Customer
from datasync import demo, engine
from datasync.models import (
    ConflictPolicy,
    ConflictStatus,
    RecordMap,
    SourceKind,
    SyncConflict,
    SyncRun,
    SyncSource,
)
from datasync.schedules import SCHEDULES
from maintenance.demo_company import build_company
from queueing import Job
from tests.api.conftest import client_for
from tests.harness import delete_keys

CSV = "Code,Name,Email\nK-1,One,one@example.org\nK-2,Two,bad-address\n"


def user(role: str) -> User:
    account = User.objects.create_user(f"{role}-user", password="correct horse battery")
    account.groups.add(Group.objects.get(name=role))
    return account


def csv_source(**fields) -> SyncSource:
    values = {
        "name": "csv-customers",
        "kind": SourceKind.CSV,
        "target": "customers",
        "config": {"defaults": {"region": "NL"}},
        "field_map": {"code": "Code", "name": "Name", "email": "Email"},
        "csv_content": CSV,
        **fields,
    }
    return SyncSource.objects.create(**values)


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:throttle:*", "taskyard:limit:*")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"), [("manager", 202), ("admin", 202), ("dispatcher", 403), ("customer", 403)]
)
def test_who_may_start_a_sync_and_one_job_per_source(role, expected):
    csv_source()
    client = client_for(user(role))
    body = {"source": "csv-customers", "mode": "full", "dry_run": True}
    response = client.post("/api/v1/queue/data-sync", body, format="json")
    assert response.status_code == expected, response.content
    if expected == 202:
        job = Job.objects.get(id=response.json()["id"])
        assert (job.task_name, job.queue, job.kwargs) == ("datasync.run_sync", "datasync", body)
        again = client.post("/api/v1/queue/data-sync", {"source": "csv-customers"}, format="json")
        assert again.json()["id"] == str(job.id)  # one run at a time per source


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "nobody"}, "source"),
        ({"source": "csv-customers", "mode": "sometimes"}, "mode"),
        ({"source": "csv-customers", "dry_run": "perhaps"}, "dry_run"),
        ({"mode": "full"}, "source"),
        ({"source": "csv-customers", "batch": 10}, "batch"),
    ],
)
def test_bad_arguments_are_400s_naming_the_field(body, field):
    csv_source()
    response = client_for(user("manager")).post("/api/v1/queue/data-sync", body, format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json())
    assert not Job.objects.filter(task_name="datasync.run_sync").exists()


@pytest.mark.django_db
def test_run_history_and_conflict_queue_over_the_api():
    source = csv_source(conflict_policy=ConflictPolicy.MANUAL)
    run = engine.sync(source.name, "full")
    Customer.objects.filter(code="K-1").update(name="Ours")
    source.csv_content = CSV.replace("One", "Theirs")
    source.save()
    engine.sync(source.name, "full")
    client = client_for(user("manager"))

    runs = client.get("/api/v1/queue/data-sync/runs", {"source": source.name}).json()
    assert [r["id"] for r in runs["results"]][-1] == run.id
    detail = client.get(f"/api/v1/queue/data-sync/runs/{run.id}").json()
    assert (detail["created"], detail["invalid"]) == (1, 1)
    assert detail["record_errors"][0]["reason"] == {
        "email": ["Email: Enter a valid email address."]
    }
    conflicts = client.get("/api/v1/queue/data-sync/conflicts").json()["results"]
    assert [
        (c["external_id"], c["source_values"]["name"], c["local_values"]["name"]) for c in conflicts
    ] == [("K-1", "Theirs", "Ours")]
    assert client_for(user("dispatcher")).get("/api/v1/queue/data-sync/runs").status_code == 403


@pytest.mark.django_db
def test_admin_uploads_a_csv_refuses_a_misdeclared_source_and_runs_it(admin_client):
    page = "/admin/datasync/syncsource/add/"
    form = {
        "name": "uploaded",
        "kind": "csv",
        "target": "customers",
        "config": '{"defaults": {"region": "NL"}}',
        "field_map": '{"code": "Code", "name": "Name", "nickname": "Nick"}',
        "outbound_map": "{}",
        "conflict_policy": "source_wins",
        "batch_size": 500,
        "enabled": "on",
        "csv_upload": SimpleUploadedFile("customers.csv", CSV.encode(), "text/csv"),
    }
    refused = admin_client.post(page, form)
    assert refused.status_code == 200
    assert "nickname: not accepted by customers" in refused.content.decode()
    form["field_map"] = '{"code": "Code", "name": "Name", "email": "Email"}'
    form["csv_upload"] = SimpleUploadedFile("customers.csv", CSV.encode(), "text/csv")
    assert admin_client.post(page, form).status_code == 302
    source = SyncSource.objects.get(name="uploaded")
    assert source.csv_content == CSV
    engine.sync(source.name, "full")
    for model in ("syncsource", "syncrun", "syncconflict", "recordmap"):
        assert admin_client.get(f"/admin/datasync/{model}/").status_code == 200
    run = SyncRun.objects.get()
    assert (
        "Enter a valid email address."
        in admin_client.get(f"/admin/datasync/syncrun/{run.id}/change/").content.decode()
    )


@pytest.mark.django_db
def test_admin_shows_a_conflict_side_by_side_and_resolves_it(admin_client):
    source = csv_source(conflict_policy=ConflictPolicy.MANUAL)
    engine.sync(source.name, "full")
    Customer.objects.filter(code="K-1").update(name="Ours")
    source.csv_content = CSV.replace("One", "Theirs")
    source.save()
    engine.sync(source.name, "full")
    conflict = SyncConflict.objects.get()
    page = admin_client.get(f"/admin/datasync/syncconflict/{conflict.id}/change/").content.decode()
    assert "<td>Theirs</td><td>Ours</td>" in page
    response = admin_client.post(
        "/admin/datasync/syncconflict/",
        {"action": "keep_local", "_selected_action": [conflict.id]},
    )
    assert response.status_code == 302
    assert SyncConflict.objects.get().status == ConflictStatus.LOCAL
    assert Customer.objects.get(code="K-1").name == "Ours"
    assert engine.sync(source.name, "full").conflicts == 0  # settled


def test_schedules_run_every_scheduled_source():
    assert {entry["task"] for entry in SCHEDULES.values()} == {"datasync.sync_sources"}
    assert {entry["kwargs"]["mode"] for entry in SCHEDULES.values()} == {"full", "incremental"}


@pytest.mark.django_db
def test_demo_seeds_sources_and_a_run_once_and_clears_them():
    from billing import demo as billing_demo

    company = build_company(dt.date(2026, 12, 1), customers=20)
    billing_demo.seed(company)
    first = demo.seed(company)
    assert first == {"SyncSource": 2, "SyncRun": 1}
    run = SyncRun.objects.get()
    assert (run.unchanged, run.invalid, run.created) == (20, 1, 0)  # billing's customers
    assert demo.seed(company) == {"SyncSource": 0, "SyncRun": 0}
    cleared = demo.clear()
    assert cleared["SyncSource"] == 2 and cleared["RecordMap"] == 20
    assert not SyncSource.objects.exists() and not RecordMap.objects.exists()

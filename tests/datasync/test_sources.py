"""The REST source (cursor and page pagination, updated-after and If-Modified-Since, the
change feed), CSV, outbound fields (a booking's status pushed back to Airtable), and the
delta path of a webhook."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from billing.models import Customer
from datasync import engine
from datasync.models import (
    RecordError,
    RecordMap,
    RunStatus,
    SourceKind,
    SyncRun,
    SyncSource,
    WebhookEvent,
    WebhookStatus,
)
from datasync.signatures import sign_hmac
from datasync.sources import SourceError
from notifications import reminders
from notifications.models import Booking, BookingStatus, Recipient
from tests.datasync.conftest import BASE, airtable_source, airtable_table, customer_row
from tests.harness import delete_keys, wait_until

REST_MAP = {"code": "code", "name": "name", "email": "email"}


def rest_source(fake_url: str, pagination: str = "cursor", **fields) -> SyncSource:
    return SyncSource.objects.create(
        name=f"rest-{pagination}",
        kind=SourceKind.REST,
        target="customers",
        config={
            "url": f"{fake_url}/api/v1/customers",
            "pagination": pagination,
            "defaults": {"region": "BE"},
        },
        field_map=REST_MAP,
        batch_size=100,
        **fields,
    )


def rest_rows(count: int) -> list[dict]:
    return [
        {"code": f"R-{n:04d}", "name": f"Partner customer {n}", "email": f"r{n}@example.org"}
        for n in range(count)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("pagination", ["cursor", "page"])
def test_rest_source_pages_then_reads_only_what_changed_after_the_watermark(
    guard, rest_fake, pagination
):
    ids = rest_fake.seed(
        "customers", rest_rows(250), modified=timezone.now() - dt.timedelta(hours=1)
    )
    source = rest_source(rest_fake.url, pagination)
    full = engine.sync(source.name, "full")
    assert (full.read, full.created) == (250, 250)
    assert rest_fake.count("records.list") == 3
    assert Customer.objects.get(code="R-0042").region == "BE"

    # Nothing changed since: If-Modified-Since answers 304 and the run reads nothing.
    quiet = engine.sync(source.name, "incremental")
    assert quiet.read == 0
    assert [r.status for r in rest_fake.requests][-1] == 304

    rest_fake.change("customers", ids[7], {"name": "Renamed"})
    rest_fake.change("customers", ids[9], {"email": "new@example.org"})
    changed = engine.sync(source.name, "incremental")
    assert (changed.read, changed.updated, changed.unchanged) == (2, 2, 0)
    assert Customer.objects.get(code="R-0007").name == "Renamed"
    assert rest_fake.requests[-1].query["updated_after"]


@pytest.mark.django_db
def test_rest_change_feed_upserts_and_deletes_single_records(guard, rest_fake):
    ids = rest_fake.seed("customers", rest_rows(20))
    source = rest_source(rest_fake.url)
    first = engine.sync(source.name, "delta")
    assert (first.read, first.created) == (20, 20)
    rest_fake.change("customers", ids[3], {"name": "Moved"})
    rest_fake.remove("customers", ids[4])
    delta = engine.sync(source.name, "delta")
    assert (delta.read, delta.updated, delta.deleted) == (2, 1, 1)
    assert RecordMap.objects.get(external_id=ids[4]).deleted_at is not None
    assert engine.sync(source.name, "delta").read == 0
    source.refresh_from_db()
    assert source.delta_cursor == "22"


@pytest.mark.django_db
def test_csv_source_reports_bad_rows_and_syncs_the_rest(guard):
    text = (
        "Code,Name,Email\n"
        "C-1,First,first@example.org\n"
        "C-2,,second@example.org\n"
        "C-3,Third,third(at)example.org\n"
        "C-4,Fourth,fourth@example.org\n"
        "C-4,Fourth again,again@example.org\n"
    )
    source = SyncSource.objects.create(
        name="csv-customers",
        kind=SourceKind.CSV,
        target="customers",
        config={"defaults": {"region": "NL"}},
        field_map={"code": "Code", "name": "Name", "email": "Email"},
        csv_content=text,
        batch_size=2,  # the duplicate falls in another batch than its twin
    )
    run = engine.sync(source.name, "full")
    assert (run.read, run.created, run.invalid) == (5, 2, 3)
    reasons = {e.external_id: e.reason for e in RecordError.objects.filter(run=run)}
    assert reasons == {
        "C-2": {"name": ["Name: missing"]},
        "C-3": {"email": ["Email: Enter a valid email address."]},
        "C-4 (line 6)": {"code": ["'C-4' is already synced from record C-4"]},
    }
    assert set(Customer.objects.values_list("code", flat=True)) == {"C-1", "C-4"}


@pytest.mark.django_db
def test_a_pickup_status_changed_here_is_pushed_back_to_airtable(guard, airtable_fake):
    Recipient.objects.create(kind="customer", ref="DEMO-C0001", name="Anna")
    when = (timezone.now() + dt.timedelta(days=3)).replace(microsecond=0)
    table = "Pickups"
    ids = airtable_fake.seed(
        BASE,
        table,
        [
            {
                "Ref": f"PU-{n}",
                "Customer": "DEMO-C0001",
                "When": when.isoformat(),
                "Where": "Kerkstraat 1",
            }
            for n in range(3)
        ],
    )
    source = airtable_source(
        airtable_fake.url,
        name="airtable-pickups",
        target="bookings",
        field_map={
            "ref": "Ref",
            "recipient": "Customer",
            "scheduled_for": "When",
            "location": "Where",
        },
        outbound_map={"status": "Status"},
    )
    source.config = {**source.config, "table": table}
    source.save()
    first = engine.sync(source.name, "full")
    assert (first.created, first.pushed) == (3, 0)  # made from Airtable: nothing to push
    assert Booking.objects.get(ref="PU-1").reminders.exists()  # through notifications

    reminders.cancel_booking("PU-1")
    run = engine.sync(source.name, "incremental")
    assert run.pushed == 1
    assert airtable_table(airtable_fake.url, table).get(ids[1])["fields"]["Status"] == "cancelled"
    assert Booking.objects.get(ref="PU-1").status == BookingStatus.CANCELLED
    assert engine.sync(source.name, "incremental").pushed == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_airtable_webhook_upserts_the_one_record_it_names(guard, airtable_fake, celery_worker):
    delete_keys("taskyard:webhook:seen:*")
    ids = airtable_fake.seed(BASE, "Customers", [customer_row(n) for n in range(3)])
    source = airtable_source(airtable_fake.url)
    engine.sync(source.name, "full")
    airtable_fake.change(BASE, "Customers", ids[2], {"Name": "Changed in Airtable"})
    body = json.dumps(
        {"id": "evt-1", "type": "record.updated", "source": source.name, "record": {"id": ids[2]}}
    ).encode()
    secret = settings.WEBHOOK_SOURCES["airtable"]["secret"]
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign_hmac(secret, body).items()}
    response = Client().post(
        "/webhooks/airtable/", body, content_type="application/json", **headers
    )
    assert response.status_code == 202
    event = wait_until(
        lambda: WebhookEvent.objects.filter(status=WebhookStatus.PROCESSED).first(),
        timeout=30,
        message=lambda: str(list(WebhookEvent.objects.values("status", "last_error"))),
    )
    assert Customer.objects.get(code="AT-00002").name == "Changed in Airtable"
    assert RecordMap.objects.get(external_id=ids[2]).writes == 2
    assert event.source == "airtable"


@pytest.mark.django_db
def test_a_csv_read_from_a_path_and_a_dry_run_that_writes_nothing(guard, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Code,Name,Email\nP-1,One,one@example.org\nP-2,Two,two@example\n")
    source = SyncSource.objects.create(
        name="csv-path",
        kind=SourceKind.CSV,
        target="customers",
        config={"path": str(path), "defaults": {"region": "NL"}},
        field_map={"code": "Code", "name": "Name", "email": "Email"},
    )
    dry = engine.sync(source.name, "full", dry_run=True)
    assert (dry.dry_run, dry.created, dry.invalid) == (True, 1, 1)
    assert not Customer.objects.exists() and not RecordMap.objects.exists()
    assert RecordError.objects.get(run=dry).external_id == "P-2"  # the report is kept
    real = engine.sync(source.name, "full")
    assert real.created == 1 and Customer.objects.get().code == "P-1"
    path.unlink()
    with pytest.raises(SourceError, match="cannot read"):
        engine.sync(source.name, "full")
    failed = SyncRun.objects.order_by("-id").first()
    assert failed.status == RunStatus.FAILED and "cannot read" in failed.error

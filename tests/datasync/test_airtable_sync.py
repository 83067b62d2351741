"""Syncing customers from Airtable (the fake, over HTTP through pyairtable): a full sync,
an incremental one that touches exactly what changed, deletions, conflicts under each
policy, invalid records reported one by one, and 429s that slow the sync but lose
nothing."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter

import pytest
from django.utils import timezone

from billing.models import Customer
from datasync import engine
from datasync.models import (
    ConflictPolicy,
    ConflictStatus,
    RecordError,
    RecordMap,
    RunStatus,
    SyncConflict,
)
from tests.datasync.conftest import BASE, TABLE, airtable_source, airtable_table, customer_row

# The size; DATASYNC_TEST_RECORDS lowers it for a quick local run.
RECORDS = int(os.environ.get("DATASYNC_TEST_RECORDS", "20000"))
REMOTE_CHANGES = 50


@pytest.mark.django_db
def test_full_sync_of_20000_then_incremental_touches_exactly_the_50_changed(guard, airtable_fake):
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    rows = [customer_row(n) for n in range(RECORDS)]
    ids = airtable_fake.seed(BASE, TABLE, rows, modified=an_hour_ago)
    source = airtable_source(airtable_fake.url)
    started = time.monotonic()
    full = engine.sync(source.name, "full")
    full_seconds = time.monotonic() - started

    assert full.status == RunStatus.SUCCEEDED
    assert (full.read, full.created, full.updated, full.invalid) == (RECORDS, RECORDS, 0, 0)
    assert Customer.objects.count() == RECORDS
    assert airtable_fake.count("records.list") == -(-RECORDS // 100)  # pages of 100
    first = Customer.objects.get(code="AT-00007")
    assert (first.name, first.email, first.region) == (
        "Airtable customer 7",
        "at7@example.org",
        "NL",
    )

    # 50 people edit records in Airtable (5 batch requests of 10, Airtable's maximum).
    changed = ids[100 : 100 + REMOTE_CHANGES]
    table = airtable_table(airtable_fake.url)
    table.batch_update([{"id": i, "fields": {"Name": f"Renamed {i}"}} for i in changed])
    before = airtable_fake.count("records.list")
    incremental = engine.sync(source.name, "incremental")

    assert incremental.status == RunStatus.SUCCEEDED
    assert incremental.updated == REMOTE_CHANGES
    assert incremental.created == incremental.deleted == incremental.conflicts == 0
    assert airtable_fake.count("records.list") - before == 1  # one filtered page
    writes = Counter(RecordMap.objects.values_list("writes", flat=True))
    assert writes == {1: RECORDS - REMOTE_CHANGES, 2: REMOTE_CHANGES}
    renamed = set(RecordMap.objects.filter(writes=2).values_list("external_id", flat=True))
    assert renamed == set(changed)
    assert Customer.objects.filter(name__startswith="Renamed ").count() == REMOTE_CHANGES
    print(f"\nfull sync of {RECORDS} records: {full_seconds:.1f}s")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "name_after", "held"),
    [
        (ConflictPolicy.MANUAL, "Ours", 1),
        (ConflictPolicy.SOURCE_WINS, "Theirs", 0),
        (ConflictPolicy.LOCAL_WINS, "Ours", 0),
    ],
)
def test_deletions_and_conflicts_under_each_policy(guard, airtable_fake, policy, name_after, held):
    ids = airtable_fake.seed(BASE, TABLE, [customer_row(n) for n in range(30)])
    source = airtable_source(airtable_fake.url, conflict_policy=policy)
    engine.sync(source.name, "full")

    both, gone = ids[3], ids[4]
    airtable_fake.change(BASE, TABLE, both, {"Name": "Theirs"})
    Customer.objects.filter(code="AT-00003").update(name="Ours")
    airtable_fake.remove(BASE, TABLE, gone)
    run = engine.sync(source.name, "full")

    assert (run.read, run.deleted, run.conflicts) == (29, 1, 1)
    assert RecordMap.objects.get(external_id=gone).deleted_at is not None
    assert Customer.objects.get(code="AT-00003").name == name_after
    assert SyncConflict.objects.filter(status=ConflictStatus.OPEN).count() == held
    # Nothing else was written: the 28 untouched records cost no write.
    assert run.updated == (1 if policy == ConflictPolicy.SOURCE_WINS else 0)
    assert run.unchanged == 28 + (1 if policy == ConflictPolicy.LOCAL_WINS else 0)
    again = engine.sync(source.name, "full")
    assert (again.updated, again.deleted, again.conflicts) == (0, 0, held)


@pytest.mark.django_db
def test_a_held_conflict_shows_both_versions_and_resolving_applies_the_choice(guard, airtable_fake):
    ids = airtable_fake.seed(BASE, TABLE, [customer_row(n) for n in range(3)])
    source = airtable_source(airtable_fake.url)
    engine.sync(source.name, "full")
    airtable_fake.change(BASE, TABLE, ids[1], {"Email": "THEIRS@example.org "})
    Customer.objects.filter(code="AT-00001").update(email="ours@example.org")
    engine.sync(source.name, "incremental")

    conflict = SyncConflict.objects.get()
    assert conflict.source_values["email"] == "theirs@example.org"
    assert conflict.local_values["email"] == "ours@example.org"
    engine.resolve(conflict, "source", "manager-user")
    assert Customer.objects.get(code="AT-00001").email == "theirs@example.org"
    assert SyncConflict.objects.get().status == ConflictStatus.SOURCE
    # Settled: the next runs see nothing to do.
    assert engine.sync(source.name, "full").conflicts == 0


@pytest.mark.django_db
def test_invalid_records_are_reported_one_by_one_and_the_rest_sync(guard, airtable_fake):
    rows = [customer_row(n) for n in range(10)]
    rows[2]["Email"] = "not-an-email"
    del rows[5]["Name"]
    rows[7]["Terms"] = "fourteen"
    airtable_fake.seed(BASE, TABLE, rows)
    source = airtable_source(airtable_fake.url)
    run = engine.sync(source.name, "full")

    assert (run.created, run.invalid) == (7, 3)
    reasons = {e.values.get("Code"): e.reason for e in RecordError.objects.filter(run=run)}
    assert reasons["AT-00002"] == {"email": ["Email: Enter a valid email address."]}
    assert reasons["AT-00005"] == {"name": ["Name: missing"]}
    assert list(reasons["AT-00007"]) == ["payment_terms_days"]
    assert not Customer.objects.filter(code__in=["AT-00002", "AT-00005", "AT-00007"]).exists()
    # Invalid records still exist in Airtable: a full run does not count them deleted.
    assert engine.sync(source.name, "full").deleted == 0


@pytest.mark.django_db
def test_the_fakes_429s_slow_the_sync_down_and_lose_nothing(settings, guard, airtable_fake):
    # The guard allows more than the fake's 5/s, so the fake answers 429 (for a short
    # penalty here); the guard halves its rate, waits, and the sync goes on.
    providers = dict(settings.TASKYARD_PROVIDERS)
    providers["airtable"] = {**providers["airtable"], "rate_limit": "20/s"}
    settings.TASKYARD_PROVIDERS = providers
    airtable_fake.rate_limit = 5
    airtable_fake.rate_limit_penalty = 1.0
    airtable_fake.seed(BASE, TABLE, [customer_row(n) for n in range(1500)])
    source = airtable_source(airtable_fake.url, batch_size=100)
    run = engine.sync(source.name, "full")

    statuses = Counter(r.status for r in airtable_fake.requests)
    assert statuses[429] >= 1
    assert statuses[200] == 15
    assert (run.status, run.created) == (RunStatus.SUCCEEDED, 1500)
    assert Customer.objects.count() == 1500

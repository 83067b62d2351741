"""The demo company: one generated business that every app seeds its own rows from."""

from __future__ import annotations

import datetime as dt
import math
from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command

from maintenance import seeding
from maintenance.demo_company import CENTRE, RADIUS_KM, build_company
from maintenance.models import DemoDataset

TODAY = date(2026, 12, 1)


def km_from_centre(lat: float, lon: float) -> float:
    dlat = (lat - CENTRE[0]) * 111.32
    dlon = (lon - CENTRE[1]) * 111.32 * math.cos(math.radians(CENTRE[0]))
    return math.hypot(dlat, dlon)


def test_the_same_day_gives_the_same_company():
    assert build_company(TODAY) == build_company(TODAY)
    assert build_company(TODAY) != build_company(TODAY, seed=7)


def test_the_company_has_the_shape_the_apps_rely_on():
    company = build_company(TODAY)
    assert [d.code for d in company.depots] == ["DEMO-D1", "DEMO-D2"]
    assert [(f.code, f.kind) for f in company.facilities] == [("DEMO-F1", "landfill")]
    assert len(company.trucks) == 10
    assert {t.depot_code for t in company.trucks} == {"DEMO-D1", "DEMO-D2"}
    assert len(company.customers) == 300
    codes = [c.code for c in company.customers]
    assert len(set(codes)) == 300 and all(code.startswith("DEMO-C") for code in codes)
    assert len({c.email for c in company.customers}) == 300
    assert all(c.phone.startswith("+316") and len(c.phone) == 12 for c in company.customers)
    assert all(km_from_centre(c.lat, c.lon) <= RADIUS_KM for c in company.customers)
    assert {c.kind for c in company.customers} == {"household", "business"}
    # Every customer fits a truck on its own, or no plan could serve them.
    biggest = max(t.capacity_kg for t in company.trucks)
    assert all(0 < c.demand_kg <= biggest for c in company.customers)


def test_pickups_are_weekly_on_the_customers_day_from_their_contract_start():
    company = build_company(TODAY)
    pickups = company.pickups(date(2026, 11, 1), date(2026, 11, 30))
    by_code = {c.code: c for c in company.customers}
    assert pickups, "a month of pickups"
    for code, day in pickups:
        customer = by_code[code]
        assert day.weekday() == customer.pickup_weekday
        assert customer.contract_start <= day
    per_customer = {code: sum(1 for c, _ in pickups if c == code) for code, _ in pickups}
    assert max(per_customer.values()) <= 5


@pytest.mark.django_db
def test_first_start_seeds_once_and_never_again_after_a_clear(settings):
    settings.TASKYARD_DEMO_ON_FIRST_START = True
    out = StringIO()
    call_command("seed_demo", "--first-start", stdout=out)
    if seeding.demo_modules():
        assert DemoDataset.objects.get().seeded_at is not None
        call_command("seed_demo", "--clear", stdout=out)
        out = StringIO()
        call_command("seed_demo", "--first-start", stdout=out)
        assert "not seeded" in out.getvalue()
    else:
        assert "no installed app has a demo module" in out.getvalue()


@pytest.mark.django_db
def test_first_start_can_be_turned_off(settings):
    settings.TASKYARD_DEMO_ON_FIRST_START = False
    out = StringIO()
    call_command("seed_demo", "--first-start", stdout=out)
    assert "not seeded" in out.getvalue()
    assert not DemoDataset.objects.exists()


# queueing's demo (queueing/demo.py) writes only its history tables; its other tables
# are the ledger, which holds the jobs the apps' demos enqueue (reminders, plans): work,
# not demo rows, so they are not counted here.
DEMO_TABLES = {"queueing": ("QueueStat", "DailyReport")}


def app_rows(label: str) -> dict[str, int]:
    from django.apps import apps

    models = apps.get_app_config(label).get_models()
    return {
        model.__name__: model.objects.count()
        for model in models
        if label not in DEMO_TABLES or model.__name__ in DEMO_TABLES[label]
    }


@pytest.fixture
def no_demo_jobs_run():
    """Routing's demo queues tomorrow's plans; a worker of the session running them would
    add optimisation runs (not demo rows) while this test counts rows. Paused, then the
    jobs cancelled."""
    from queueing.control.operations import cancel
    from queueing.control.pause import pause_queue, resume_queue
    from queueing.models import FINAL_STATUSES, Job

    pause_queue("routing")
    yield
    for job in Job.objects.filter(queue="routing").exclude(status__in=FINAL_STATUSES):
        cancel(job.id)
    resume_queue("routing")


@pytest.mark.django_db(transaction=True)
def test_every_apps_demo_seeds_once_and_clears_exactly_its_rows(no_demo_jobs_run):
    modules = seeding.demo_modules()
    labels = [label for label, _ in modules]
    assert {"billing", "routing", "notifications"} <= set(labels), labels
    company = build_company(TODAY)
    # A first round lets an app create the reference rows its demo needs and keeps (the
    # message kinds and templates notifications seeds in a migration, which the test
    # database's flush removed): those are not demo rows.
    seeding.seed(company)
    seeding.clear()
    before = {label: app_rows(label) for label in labels}

    seeding.seed(company)
    seeded = {label: app_rows(label) for label in labels}
    for label in labels:
        assert sum(seeded[label].values()) > sum(before[label].values()), f"{label}: no rows"

    seeding.seed(company)  # a second seed finds its rows and adds nothing
    assert {label: app_rows(label) for label in labels} == seeded

    seeding.clear()
    assert {label: app_rows(label) for label in labels} == before


@pytest.mark.django_db
def test_the_demo_history_fills_the_24_hour_view_and_the_reports_page(admin_client):
    """A day of 5-minute statistics and yesterday's report, marked as demo: the dashboard
    and the Reports page are not empty on a first start; a clear removes exactly them."""
    from django.conf import settings
    from django.utils import timezone

    from queueing import demo as demo_history
    from queueing.models import DailyReport, QueueStat
    from queueing.observe.history import bucket_start, snapshot
    from queueing.observe.report import business_today
    from queueing.observe.stats import time_series

    now = timezone.now()
    real = QueueStat.objects.create(
        queue="default", bucket=bucket_start(now) - dt.timedelta(hours=30), taken_at=now
    )
    assert demo_history.seed(now=now) == {
        "QueueStat": 24 * 12 * len(settings.TASKYARD_QUEUES),
        "DailyReport": 1,
    }
    assert demo_history.seed(now=now) == {"QueueStat": 0, "DailyReport": 0}  # once

    day = time_series(minutes=24 * 60)
    assert sum(point["succeeded"] for point in day) > 1000
    # every minute from the history rows but the window's first, partial bucket and the
    # last ones (the minutes since the demo's last bucket come from the roll-ups)
    assert {point["source"] for point in day[5:-10]} == {"history"}
    # The next real snapshot has nothing to catch up: the demo ends where it would start.
    assert snapshot(now)["buckets"] == 0

    yesterday = business_today(now) - dt.timedelta(days=1)
    report = DailyReport.objects.get(day=yesterday)
    assert report.is_demo and report.data["summary"]["totals"]["attempts"] > 1000
    listing = admin_client.get("/admin/queueing/reports/").content.decode()
    assert f'href="/admin/queueing/reports/{yesterday.isoformat()}/"' in listing
    page = admin_client.get(f"/admin/queueing/reports/{yesterday.isoformat()}/")
    assert page.status_code == 200 and b'aria-label="jobs on routing"' in page.content

    assert demo_history.clear() == {
        "QueueStat": 24 * 12 * len(settings.TASKYARD_QUEUES),
        "DailyReport": 1,
    }
    assert list(QueueStat.objects.all()) == [real] and not DailyReport.objects.exists()

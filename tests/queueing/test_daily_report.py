"""The daily performance report: a business day's numbers from hand-built ledger rows,
compared with the previous day and the 7-day average; stored, shown in the admin with
SVG charts, and mailed (HTML and text) to a real SMTP server started by the test."""

from __future__ import annotations

import datetime as dt
import email
import socket
import zoneinfo

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import Permission, User

import queueing
from queueing.broker import shared_redis
from queueing.counters import PROVIDER_HOUR_COST_KEY
from queueing.models import DailyReport, DeadLetter, DeadLetterReason, Job, JobStatus
from queueing.observe.report import build, create
from tests.factories import ended_attempt
from tests.harness import delete_keys, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
DAY = dt.date(2026, 11, 20)  # a Friday; Amsterdam is UTC+1 in November


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=AMSTERDAM)


def letter(job: Job, fingerprint: str, message: str) -> None:
    row = DeadLetter.objects.create(
        job=job,
        reason=DeadLetterReason.PERMANENT,
        error_class="ValueError",
        error_message=message,
        fingerprint=fingerprint,
    )
    DeadLetter.objects.filter(id=row.id).update(created_at=job.finished_at)


@pytest.fixture
def week_of_ledger(settings):
    """DAY: billing.invoice 9 succeeded (100..900 ms) + 1 dead, routing.solve 2 (5 s, 7 s),
    dead letters of two causes, stripe cost 1.5 + 0.25. DAY-1: billing.invoice 4 x 200 ms.
    DAY-2 .. DAY-7: billing.invoice 2 x 300 ms each."""
    settings.BUSINESS_TIME_ZONE = "Europe/Amsterdam"
    for n in range(1, 10):
        ended_attempt(
            queue="billing", task="billing.invoice", duration_ms=n * 100, finished_at=local(DAY, 12)
        )
    dead = ended_attempt(
        queue="billing",
        task="billing.invoice",
        outcome="dead",
        duration_ms=50,
        finished_at=local(DAY, 0, 30),  # 23:30 UTC the day before: still DAY's
    )
    letter(dead, "no-address", "customer 7 has no billing address")
    for n, fingerprint in ((1, "no-address"), (2, "no-address"), (3, "bad-vat")):
        job = ended_attempt(
            queue="billing", task="billing.other", outcome="dead", finished_at=local(DAY, 14)
        )
        letter(
            job,
            fingerprint,
            f"customer {n} has no billing address"
            if fingerprint == "no-address"
            else "VAT number rejected",
        )
    for ms in (5000, 7000):
        ended_attempt(
            queue="routing", task="routing.solve", duration_ms=ms, finished_at=local(DAY, 23, 59)
        )
    # the day after (00:00 local) and the day before (23:30 local) are not DAY's
    ended_attempt(
        queue="routing", task="routing.solve", finished_at=local(DAY + dt.timedelta(days=1), 0)
    )
    previous = DAY - dt.timedelta(days=1)
    for _ in range(3):
        ended_attempt(
            queue="billing", task="billing.invoice", duration_ms=200, finished_at=local(previous, 9)
        )
    ended_attempt(
        queue="billing",
        task="billing.invoice",
        duration_ms=200,
        finished_at=local(previous, 23, 30),
    )
    for back in range(2, 8):
        for _ in range(2):
            ended_attempt(
                queue="billing",
                task="billing.invoice",
                duration_ms=300,
                finished_at=local(DAY - dt.timedelta(days=back), 15),
            )
    client = shared_redis(text=True)
    key = PROVIDER_HOUR_COST_KEY.format
    client.set(key(provider="stripe", hour="2026-11-20T10"), 1.5)  # 11:00 local
    client.set(key(provider="stripe", hour="2026-11-19T23"), 0.25)  # 00:00 local, DAY
    client.set(key(provider="stripe", hour="2026-11-20T23"), 9)  # 00:00 local, next day
    client.set(key(provider="stripe", hour="2026-11-19T10"), 0.5)  # the previous day
    yield
    delete_keys("taskyard:provider:stripe:cost:hour:2026-11-*")


def test_the_report_counts_the_business_day_against_yesterday_and_the_week(week_of_ledger):
    data = build(DAY)
    day = data["summary"]
    assert day["start"] == "2026-11-19T23:00:00+00:00" and day["end"] == "2026-11-20T23:00:00+00:00"
    invoice = day["tasks"]["billing.invoice"]
    assert (invoice["attempts"], invoice["succeeded"], invoice["failed"]) == (10, 9, 1)
    assert invoice["failure_rate"] == 0.1
    assert invoice["run_p95_ms"] == 900  # nearest rank 10 of 50, 100 .. 900
    assert day["tasks"]["routing.solve"]["attempts"] == 2
    assert day["queues"]["billing"]["attempts"] == 13  # 10 invoices, 3 other (dead)
    assert day["queues"]["billing"]["failure_rate"] == round(4 / 13, 4)
    assert day["queues"]["routing"]["run_p95_ms"] == 7000
    assert day["totals"]["attempts"] == 15 and day["totals"]["dead"] == 4
    assert [s["task"] for s in day["slowest"]] == [
        "routing.solve",
        "billing.invoice",
        "billing.other",
    ]
    causes = [(d["fingerprint"], d["count"], d["tasks"]) for d in day["dead_letters"]]
    assert causes == [
        ("no-address", 3, ["billing.invoice", "billing.other"]),
        ("bad-vat", 1, ["billing.other"]),
    ]
    assert day["provider_cost"]["stripe"] == 1.75
    assert day["totals"]["provider_cost"] == 1.75
    assert sum(h["succeeded"] + h["failed"] for h in day["hourly"]) == 15
    assert day["hourly"][12] == {"hour": 12, "succeeded": 9, "failed": 0}
    assert day["hourly"][0] == {"hour": 0, "succeeded": 0, "failed": 1}

    previous = data["previous"]
    assert previous["tasks"]["billing.invoice"] == {
        "attempts": 4,
        "failure_rate": 0.0,
        "run_p95_ms": 200.0,
    }
    assert previous["totals"]["provider_cost"] == 0.5
    week = data["week_average"]
    # (4 + 6 x 2) / 7 attempts; p95 (200 + 6 x 300) / 7; nothing failed
    assert week["tasks"]["billing.invoice"] == {
        "attempts": round(16 / 7, 2),
        "failure_rate": 0.0,
        "run_p95_ms": round(2000 / 7, 1),
    }
    assert week["queues"]["billing"]["attempts"] == round(16 / 7, 2)
    assert "routing" not in week["queues"]  # no routing job in the week before

    # A stored report of a day is what later reports compare with.
    DailyReport.objects.create(
        day=DAY - dt.timedelta(days=1),
        data={"summary": {**day, "totals": {**day["totals"], "attempts": 99}}},
    )
    assert build(DAY)["previous"]["totals"]["attempts"] == 99


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.ALERT_EMAILS = ["ops@example.com", "lead@example.com"]
    settings.SITE_URL = "https://taskyard.example.com"
    yield inbox
    controller.stop()


def test_the_report_is_stored_and_mailed_as_html_and_text(week_of_ledger, smtp_server):
    report = create(DAY)
    wait_until(lambda: len(smtp_server.messages) == 1, timeout=10)
    message = smtp_server.messages[0]
    assert message["Subject"] == "Taskyard daily report 2026-11-20: 15 jobs, 26.7% failed"
    assert message["To"] == "ops@example.com, lead@example.com"
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    text, html = parts["text/plain"], parts["text/html"]
    assert "- billing: 13 (4) / 30.8% (0.0%) / 900.0 (200.0)" in text
    assert "- routing.solve on routing: 7000.0 ms" in text
    assert "- 3 x ValueError: customer 1 has no billing address" in text
    assert "- stripe: 1.75" in text
    assert "https://taskyard.example.com/admin/queueing/reports/2026-11-20/" in text
    assert '<tr data-task="billing.invoice">' in html and "VAT number rejected" in html
    report.refresh_from_db()
    assert report.emailed_at is not None
    # A rerun replaces the day's report (one row per day) and mails it again.
    create(DAY)
    assert DailyReport.objects.filter(day=DAY).count() == 1
    wait_until(lambda: len(smtp_server.messages) == 2, timeout=10)


def test_the_report_page_draws_its_charts_for_those_who_see_stats(
    week_of_ledger, client, admin_client
):
    create(DAY, email=False)
    listing = admin_client.get("/admin/queueing/reports/")
    assert b'href="/admin/queueing/reports/2026-11-20/"' in listing.content
    page = admin_client.get("/admin/queueing/reports/2026-11-20/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('aria-label="attempts per hour"') == 1
    assert 'aria-label="jobs on billing"' in body and 'aria-label="jobs on routing"' in body
    assert '<tr data-queue="billing"><td>billing</td><td>13</td><td>4</td>' in body
    assert admin_client.get("/admin/queueing/reports/2026-11-21/").status_code == 404
    assert admin_client.get("/admin/queueing/reports/yesterday/").status_code == 404
    staff = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/queueing/reports/2026-11-20/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_queue_stats"))
    assert client.get("/admin/queueing/reports/2026-11-20/").status_code == 200


@pytest.mark.worker
def test_the_declared_job_builds_the_report_on_a_real_worker(week_of_ledger, celery_worker):
    job = queueing.enqueue("queueing.daily_report", kwargs={"day": DAY.isoformat()})
    assert job.queue == "maintenance" and job.priority == 9
    wait_until(
        lambda: Job.objects.get(id=job.id).status == JobStatus.SUCCEEDED,
        timeout=30,
        message=celery_worker.log,
    )
    assert DailyReport.objects.get(day=DAY).data["summary"]["totals"]["attempts"] == 15


def test_a_rebuild_over_the_api_takes_only_a_day_the_ledger_holds_whole(settings):
    """Finished jobs are kept at least 26 h: a day that has not ended, or whose attempts
    the prune has started to delete, is a 400 naming the field, and nothing is queued (a
    rebuild would replace the stored report with a truncated one)."""
    from queueing.control.retention import retention_seconds
    from queueing.observe.report import business_today
    from tests.api.conftest import client_for, make_user

    assert retention_seconds("default", "succeeded") >= 26 * 3600
    settings.TASKYARD_QUEUES = {
        **settings.TASKYARD_QUEUES,
        "billing": {"concurrency": 1, "retention": {"succeeded": 3600}},
    }
    assert retention_seconds("billing", "succeeded") == 26 * 3600  # the floor holds

    admin = client_for(make_user("admin"))
    today = business_today()
    for day, says in (
        (today, "has not ended yet"),
        (today - dt.timedelta(days=3), "no longer holds all of"),
    ):
        response = admin.post(
            "/api/v1/queue/jobs",
            {"task": "queueing.daily_report", "args": {"day": day.isoformat()}},
            format="json",
        )
        assert response.status_code == 400
        assert says in response.json()["error"]["fields"]["args.day"][0]
    assert not Job.objects.filter(task_name="queueing.daily_report").exists()


def test_a_demo_report_is_never_what_a_real_one_compares_with(week_of_ledger):
    from_ledger = build(DAY)["previous"]["totals"]["attempts"]
    demo = build(DAY - dt.timedelta(days=1))
    demo["summary"]["totals"]["attempts"] = 99
    DailyReport.objects.create(day=DAY - dt.timedelta(days=1), data=demo, is_demo=True)
    assert build(DAY)["previous"]["totals"]["attempts"] == from_ledger != 99
    # A real build of a demo day replaces it for good.
    assert create(DAY - dt.timedelta(days=1), email=False).is_demo is False

"""The demo company's notification rows: seeded once, idempotent, cleared exactly."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from maintenance.demo_company import build_company
from notifications import demo, services
from notifications.models import Booking, Recipient, Reminder
from queueing import Job, JobStatus
from tests.notifications.conftest import make_recipient

pytestmark = pytest.mark.django_db


def test_seed_is_idempotent_and_clear_removes_exactly_the_demo_rows(settings):
    company = build_company(timezone.localdate() + dt.timedelta(days=1))
    mine = make_recipient("C-OWN")
    counts = demo.seed(company)
    assert counts["recipients"] == len(company.customers) + len(company.trucks)
    assert counts["bookings"] > 0
    # Every booking has a reminder per offset: scheduled, or skipped when already past.
    offsets = len(settings.NOTIFICATIONS_REMINDER_OFFSETS)
    assert Reminder.objects.count() == counts["bookings"] * offsets
    assert Reminder.objects.filter(status="scheduled").count() == counts["reminders"] > 0
    assert not Reminder.objects.filter(status="scheduled", due_at__lte=timezone.now()).exists()
    customer = company.customers[0]
    recipient = Recipient.objects.get(ref=customer.code)
    assert (recipient.email, recipient.phone, recipient.locale) == (
        customer.email,
        customer.phone,
        customer.locale,
    )
    assert Recipient.objects.get(ref="DEMO-T01-DRIVER").kind == "driver"
    # Templates for every seed kind: a payment reminder to a demo customer renders.
    [sms] = services.send(
        "payment_reminder",
        customer.code,
        {"invoice": "INV-1", "amount": "12.50", "currency": "EUR", "dueDate": "2026-12-31"},
        channel="sms",
    )
    assert "INV-1" in sms.body

    assert demo.seed(company) == {"templates": 0, "recipients": 0, "bookings": 0, "reminders": 0}

    cleared = demo.clear()
    assert cleared["recipients"] == counts["recipients"]
    assert cleared["bookings"] == counts["bookings"]
    assert list(Recipient.objects.all()) == [mine]
    assert not Booking.objects.exists() and not Reminder.objects.exists()
    waiting = Job.objects.filter(
        task_name="notifications.send_reminder",
        status__in=(JobStatus.SCHEDULED, JobStatus.QUEUED),
        run_at__gt=timezone.now() + dt.timedelta(minutes=1),
    )
    assert not waiting.exists(), "the demo bookings' reminder jobs were withdrawn"

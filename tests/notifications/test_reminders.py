"""Booking reminders with a real worker and the Twilio fake: created, moved twice, then
cancelled, exactly the right reminders arrive, none after the cancel, none late.
Offsets shrink to seconds through settings (the jobs carry their own offsets)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import formats, timezone

from notifications import reminders
from notifications.models import Booking, Reminder, ReminderStatus
from queueing import Job, JobStatus
from tests.harness import wait_until
from tests.notifications.conftest import make_recipient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

FINAL = (JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.DEAD)


def reminder_jobs(booking: Booking) -> list[Job]:
    return list(Job.objects.filter(unique_key__startswith=f"notifications:reminder:{booking.id}:"))


def test_a_booking_created_moved_twice_and_cancelled_gets_exactly_the_right_reminders(
    worker, fakes, kinds, settings
):
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [9, 5, 2]
    make_recipient(email="", phone="+31611111111")
    t0 = timezone.now()

    # Created 7 s ahead: T-9 s is already past (skipped); T-5 s and T-2 s scheduled.
    booking = reminders.create_booking("BK-1", "DEMO-C0001", t0 + dt.timedelta(seconds=7), "Depot")
    by_offset = {r.offset_seconds: r.status for r in booking.reminders.all()}
    assert by_offset == {9: ReminderStatus.SKIPPED, 5: "scheduled", 2: "scheduled"}

    # Moved to +20 s, then to +14 s: three reminders at +5, +9 and +12 s replace them.
    reminders.move_booking("BK-1", t0 + dt.timedelta(seconds=20))
    final_time = t0 + dt.timedelta(seconds=14)
    reminders.move_booking("BK-1", final_time)
    due = sorted(Reminder.objects.filter(booking=booking).values_list("due_at", flat=True))
    assert due == [final_time - dt.timedelta(seconds=s) for s in (9, 5, 2)]

    # The first reminder (T-9 s, at +5 s) arrives, for the final time; then the booking
    # is cancelled before the next one (+9 s).
    twilio = fakes["twilio"]
    wait_until(lambda: twilio.count("messages.create") >= 1, timeout=15, message="T-9s reminder")
    reminders.cancel_booking("BK-1")
    cancelled_at = timezone.now()
    assert cancelled_at < final_time - dt.timedelta(seconds=5), "the test machine is too slow"

    wait_until(
        lambda: all(j.status in FINAL for j in reminder_jobs(booking)),
        timeout=30,
        message=lambda: (
            f"reminder jobs final: {[(j.status, j.run_at) for j in reminder_jobs(booking)]}"
        ),
    )
    # Past the pickup time: nothing else came.
    wait_until(lambda: timezone.now() > final_time, timeout=20)
    sent = twilio.requests
    assert len(sent) == 1
    body = sent[0].form()["Body"][0]
    local = final_time.astimezone(zoneinfo.ZoneInfo(settings.BUSINESS_TIME_ZONE))
    assert body == f"Taskyard: pickup BK-1 at Depot on {formats.date_format(local, 'D j M Y H:i')}."
    assert sent[0].at < final_time.timestamp(), "a reminder arrived after the pickup"
    assert sent[0].at < cancelled_at.timestamp()
    statuses = sorted(j.status for j in reminder_jobs(booking))
    # One reminder ran; every other job of the booking (replaced, withdrawn) is cancelled.
    assert statuses.count(JobStatus.SUCCEEDED) == 1
    assert not any(j.status == JobStatus.DEAD for j in reminder_jobs(booking))
    by_offset = {r.offset_seconds: r.status for r in Reminder.objects.filter(booking=booking)}
    assert by_offset == {9: "sent", 5: "cancelled", 2: "cancelled"}

"""Booking reminders with a real worker and the Twilio fake: created, moved twice, then
cancelled, exactly the right reminders arrive, none after the cancel, none late.
Offsets shrink to seconds through settings (the jobs carry their own offsets).

Then the reminder's work called directly: a message held by quiet hours when its booking
moves, bookings changed behind the services' back, a cancel while the job runs (real
worker, PostgreSQL's row lock), the admin's move and cancel, dates in the recipient's
language."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection, transaction
from django.utils import formats, timezone

from notifications import reminders, services
from notifications.models import (
    Booking,
    BookingStatus,
    Message,
    MessageStatus,
    Reminder,
    ReminderStatus,
)
from queueing import Job, JobStatus
from tests.harness import wait_until
from tests.notifications.conftest import make_recipient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

FINAL = (JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.DEAD)


def reminder_jobs(booking: Booking) -> list[Job]:
    return list(Job.objects.filter(unique_key__startswith=f"notifications:reminder:{booking.id}:"))


def waiting_reminder_jobs(booking: Booking) -> list[Job]:
    return [job for job in reminder_jobs(booking) if job.status not in FINAL]


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


def quiet_now(zone: str = "Europe/Amsterdam") -> dict:
    """Quiet hours that began an hour ago and end in half an hour (recipient fields)."""
    now = timezone.now().astimezone(zoneinfo.ZoneInfo(zone))
    return {
        "time_zone": zone,
        "quiet_start": (now - dt.timedelta(hours=1)).time(),
        "quiet_end": (now + dt.timedelta(minutes=30)).time(),
    }


def run_now(booking: Booking, offset: int) -> list[Message]:
    """The reminder job's work for ``offset``, run at once (as the job does)."""
    booking.refresh_from_db()
    with transaction.atomic():
        result = reminders.run_reminder(booking.id, offset, booking.scheduled_for.isoformat())
    return list(Message.objects.filter(id__in=result["messages"]))


@pytest.mark.django_db  # nothing is committed: no worker runs these jobs
def test_a_reminder_held_by_quiet_hours_is_cancelled_when_its_booking_moves(kinds, settings):
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [3600]
    make_recipient(email="", **quiet_now())
    first_time = timezone.now() + dt.timedelta(hours=2)
    booking = reminders.create_booking("BK-H", "DEMO-C0001", first_time, "Depot")
    [held] = run_now(booking, 3600)
    assert services.deliver(held.id)["held_until"]  # quiet hours: waits for their end
    assert Message.objects.get(id=held.id).status == MessageStatus.QUEUED

    new_time = first_time + dt.timedelta(hours=3)
    reminders.move_booking("BK-H", new_time)

    held.refresh_from_db()
    assert held.status == MessageStatus.CANCELLED
    assert held.error == f"the booking moved to {new_time.isoformat()}"
    # Its held delivery job finds it settled and sends nothing; the new reminder's job
    # carries the new time.
    assert services.deliver(held.id) == {"skipped": f"message {held.id} is cancelled"}
    [job] = waiting_reminder_jobs(booking)
    assert job.kwargs["scheduled_for"] == new_time.isoformat()
    assert job.run_at == new_time - dt.timedelta(hours=1)
    [fresh] = run_now(booking, 3600)
    assert fresh.id != held.id and fresh.expires_at == new_time
    assert fresh.status == MessageStatus.QUEUED


@pytest.mark.django_db
def test_a_reminder_message_of_a_booking_cancelled_or_moved_behind_our_back_is_not_sent(
    kinds, settings
):
    """Bookings written in bulk (another app's UPDATE) skip cancel_booking/move_booking:
    the delivery checks the booking itself before sending."""
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [3600]
    make_recipient(email="")
    soon = timezone.now() + dt.timedelta(hours=2)
    cancelled = reminders.create_booking("BK-C", "DEMO-C0001", soon)
    moved = reminders.create_booking("BK-M", "DEMO-C0001", soon)
    [to_cancelled] = run_now(cancelled, 3600)
    [to_moved] = run_now(moved, 3600)
    Booking.objects.filter(id=cancelled.id).update(status=BookingStatus.CANCELLED)
    later = soon + dt.timedelta(days=1)
    Booking.objects.filter(id=moved.id).update(scheduled_for=later)

    assert services.deliver(to_cancelled.id)["status"] == MessageStatus.CANCELLED
    assert services.deliver(to_moved.id)["status"] == MessageStatus.CANCELLED
    to_cancelled.refresh_from_db()
    to_moved.refresh_from_db()
    assert to_cancelled.error == "the booking was cancelled"
    assert to_moved.error == f"the booking moved to {later.isoformat()}"
    assert to_cancelled.sent_at is None and to_moved.sent_at is None


def test_a_cancel_while_the_reminder_job_runs_waits_for_it_and_nothing_is_sent(
    worker, fakes, kinds, settings
):
    """The reminder job locks its booking: a cancel that commits while the job runs is
    seen by it (no message), not slipped between its check and its message."""
    if not connection.features.has_select_for_update:
        pytest.skip("SQLite has one writer at a time: no row locks to test")
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [2]
    make_recipient(email="", phone="+31611111111")
    booking = reminders.create_booking(
        "BK-L", "DEMO-C0001", timezone.now() + dt.timedelta(seconds=8)
    )
    [job] = reminder_jobs(booking)

    def blocked_on_the_booking() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            return cursor.fetchone()[0] > 0

    with transaction.atomic():
        Booking.objects.select_for_update().get(id=booking.id)  # the cancel's own lock
        wait_until(blocked_on_the_booking, timeout=15, message="the reminder job waits")
        assert Job.objects.get(id=job.id).status == JobStatus.RUNNING
        reminders.cancel_booking("BK-L")

    wait_until(lambda: Job.objects.get(id=job.id).status in FINAL, timeout=15, message="job ended")
    assert Job.objects.get(id=job.id).status == JobStatus.CANCELLED
    assert not Message.objects.exists()
    assert fakes["twilio"].count("messages.create") == 0
    reminder = Reminder.objects.get(booking=booking)
    assert reminder.status == ReminderStatus.CANCELLED


def admin_change(booking: Booking, when: dt.datetime, location: str) -> dict[str, str]:
    """The booking's change form as the admin posts it (reminders inline unchanged)."""
    local = timezone.localtime(when)
    data = {
        "scheduled_for_0": local.strftime("%Y-%m-%d"),
        "scheduled_for_1": local.strftime("%H:%M:%S"),
        "location": location,
        "reminders-TOTAL_FORMS": str(booking.reminders.count()),
        "reminders-INITIAL_FORMS": str(booking.reminders.count()),
        "reminders-MIN_NUM_FORMS": "0",
        "reminders-MAX_NUM_FORMS": "1000",
    }
    for number, reminder in enumerate(booking.reminders.order_by("id")):
        data[f"reminders-{number}-id"] = str(reminder.id)
        data[f"reminders-{number}-booking"] = str(booking.id)
    return data


@pytest.mark.django_db
def test_the_admin_moves_a_booking_through_move_booking_and_cancels_after_confirmation(
    kinds, settings, admin_client
):
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [3600]
    make_recipient(email="")
    first_time = (timezone.now() + dt.timedelta(hours=3)).replace(microsecond=0)
    booking = reminders.create_booking("BK-A", "DEMO-C0001", first_time, "Depot")
    [queued] = run_now(booking, 3600)
    url = f"/admin/notifications/booking/{booking.id}/change/"

    new_time = first_time + dt.timedelta(hours=2)
    response = admin_client.post(url, admin_change(booking, new_time, "Gate 2"))
    assert response.status_code == 302, re.findall(r"errorlist.{0,300}", response.content.decode())
    booking.refresh_from_db()
    assert (booking.scheduled_for, booking.location) == (new_time, "Gate 2")
    reminder = Reminder.objects.get(booking=booking)
    assert reminder.due_at == new_time - dt.timedelta(hours=1)
    [job] = waiting_reminder_jobs(booking)
    assert job.kwargs["scheduled_for"] == new_time.isoformat()
    queued.refresh_from_db()
    assert queued.status == MessageStatus.CANCELLED and "moved" in queued.error

    # Cancel: the action asks first, and changes nothing until confirmed.
    action = {"action": "cancel_bookings", "_selected_action": [str(booking.id)]}
    page = admin_client.post("/admin/notifications/booking/", action)
    assert page.status_code == 200 and "Confirm: cancel these bookings" in page.content.decode()
    assert Booking.objects.get(id=booking.id).status == BookingStatus.SCHEDULED
    done = admin_client.post("/admin/notifications/booking/", {**action, "confirm": "yes"})
    assert done.status_code == 302
    assert Booking.objects.get(id=booking.id).status == BookingStatus.CANCELLED
    assert Reminder.objects.get(booking=booking).status == ReminderStatus.CANCELLED
    entry = LogEntry.objects.get(object_id=str(booking.id), change_message="cancelled")
    assert entry.user.username == "admin"
    # A cancelled booking's time cannot be edited any more.
    form = admin_client.get(url).content.decode()
    assert 'name="scheduled_for_0"' not in form


@pytest.mark.django_db
def test_reminders_give_the_date_in_the_recipients_language(kinds, settings):
    settings.NOTIFICATIONS_REMINDER_OFFSETS = [3600]
    make_recipient("NL-1", email="", locale="nl", time_zone="Europe/Amsterdam")
    make_recipient("EN-1", email="", locale="en", time_zone="Europe/Amsterdam")
    pickup = dt.datetime(2030, 12, 3, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam"))
    dutch = reminders.create_booking("BK-NL", "NL-1", pickup, "Oudegracht 1")
    english = reminders.create_booking("BK-EN", "EN-1", pickup, "Oudegracht 1")
    [nl] = run_now(dutch, 3600)
    [en] = run_now(english, 3600)
    assert "di 3 Dec 2030 09:00" in nl.body, nl.body  # Django title-cases M
    assert "Tue 3 Dec 2030 09:00" in en.body, en.body

"""Bookings and their reminders: one job per booking x offset (T-24 h, T-1 h, T-15 min
by default, NOTIFICATIONS_REMINDER_OFFSETS), unique per booking x offset.

- creating a booking schedules a job per offset still in the future (past ones are
  skipped);
- moving it replaces each job (``enqueue(on_conflict="replace")`` cancels the waiting
  one) and each job carries the pickup time it was made for, so a stale one does nothing;
  its messages still queued for the old time (quiet hours, a rate limit) are cancelled;
- the job locks its booking while it makes the messages, and the delivery checks the
  booking again before sending (services.stale_booking);
- cancelling it replaces each waiting job with one that cancels itself at once, so the
  ledger shows them cancelled now rather than at their due time;
- a reminder never goes out after the pickup: the job checks the time, and its message
  expires at the pickup (quiet hours or a rate limit cannot push it later).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import formats, timezone, translation

import queueing
from notifications import services
from notifications.models import Booking, BookingStatus, Recipient, Reminder, ReminderStatus
from queueing import Job, JobCancelled, JobStatus

logger = logging.getLogger(__name__)

REMINDER_KIND = "booking_reminder"
REMINDER_DATE_FORMAT = "D j M Y H:i"
WAITING = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)


def reminder_key(booking_id: int, offset: int) -> str:
    return f"notifications:reminder:{booking_id}:{offset}"


def create_booking(
    ref: str, recipient_ref: str, scheduled_for: dt.datetime, location: str = ""
) -> Booking:
    """A booking and its reminders, in one transaction."""
    with transaction.atomic():
        recipient = Recipient.objects.get(ref=recipient_ref)
        booking = Booking.objects.create(
            ref=ref, recipient=recipient, scheduled_for=scheduled_for, location=location
        )
        schedule_reminders(booking)
    return booking


def move_booking(ref: str, scheduled_for: dt.datetime) -> Booking:
    """Move a booking: its reminders follow (replaced), and its reminder messages still
    queued for the old time (held by quiet hours, deferred by a rate limit) are
    cancelled, so none arrives with the old date."""
    with transaction.atomic():
        booking = Booking.objects.select_for_update().get(ref=ref)
        if booking.status != BookingStatus.SCHEDULED:
            raise services.NotificationError(f"booking {ref} is {booking.status}")
        booking.scheduled_for = scheduled_for
        booking.save(update_fields=["scheduled_for", "updated_at"])
        services.cancel_booking_messages(
            booking.id,
            f"the booking moved to {scheduled_for.isoformat()}",
            keep_for=scheduled_for,
        )
        schedule_reminders(booking)
    return booking


def cancel_booking(ref: str) -> Booking:
    """Cancel a booking, its waiting reminder jobs and its unsent messages."""
    with transaction.atomic():
        booking = Booking.objects.select_for_update().get(ref=ref)
        booking.status = BookingStatus.CANCELLED
        booking.save(update_fields=["status", "updated_at"])
        for reminder in booking.reminders.filter(status=ReminderStatus.SCHEDULED):
            _withdraw(booking, reminder.offset_seconds, "the booking was cancelled")
            reminder.status = ReminderStatus.CANCELLED
            reminder.note = "the booking was cancelled"
            reminder.save(update_fields=["status", "note", "updated_at"])
        services.cancel_booking_messages(booking.id, "the booking was cancelled")
    return booking


def schedule_reminders(booking: Booking, now: dt.datetime | None = None) -> list[Reminder]:
    """(Re)schedule every reminder of a scheduled booking for its current time."""
    from notifications.tasks import send_reminder

    now = now or timezone.now()
    reminders = []
    for offset in settings.NOTIFICATIONS_REMINDER_OFFSETS:
        due = booking.scheduled_for - dt.timedelta(seconds=offset)
        if due <= now:
            _withdraw(booking, offset, "the offset is already past")
            status, job_id, note = ReminderStatus.SKIPPED, None, "the offset was already past"
        else:
            kwargs = {
                "booking_id": booking.id,
                "offset_seconds": offset,
                "scheduled_for": booking.scheduled_for.isoformat(),
            }
            key = reminder_key(booking.id, offset)
            queue = settings.NOTIFICATIONS_QUEUE
            job = queueing.enqueue(
                send_reminder,
                kwargs=kwargs,
                queue=queue,
                run_at=due,
                unique_key=key,
                on_conflict="replace",
            )
            if job.kwargs.get("scheduled_for") != kwargs["scheduled_for"]:
                # The key's holder is running right now, for the old time (it will find
                # the booking moved and do nothing): this time's reminder gets a key of
                # its own.
                job = queueing.enqueue(
                    send_reminder,
                    kwargs=kwargs,
                    queue=queue,
                    run_at=due,
                    unique_key=f"{key}:{int(booking.scheduled_for.timestamp())}",
                )
            status, job_id, note = ReminderStatus.SCHEDULED, job.id, ""
        reminder, _ = Reminder.objects.update_or_create(
            booking=booking,
            offset_seconds=offset,
            defaults={"due_at": due, "status": status, "job_id": job_id, "note": note},
        )
        reminders.append(reminder)
    return reminders


def _withdraw(booking: Booking, offset: int, reason: str) -> None:
    """Cancel the waiting reminder job of (booking, offset), if any: replaced by a job
    that runs now and cancels itself (the platform's public way to cancel a job)."""
    from notifications.tasks import send_reminder

    key = reminder_key(booking.id, offset)
    if not Job.objects.filter(unique_key=key, status__in=WAITING).exists():
        return
    queueing.enqueue(
        send_reminder,
        kwargs={"booking_id": booking.id, "offset_seconds": offset, "scheduled_for": ""},
        queue=settings.NOTIFICATIONS_QUEUE,
        unique_key=key,
        on_conflict="replace",
    )
    logger.info("booking %s: reminder -%ss withdrawn (%s)", booking.ref, offset, reason)


def run_reminder(booking_id: int, offset_seconds: int, scheduled_for: str) -> dict[str, Any]:
    """Send one reminder if it is still wanted; JobCancelled when it no longer is.

    Call it in a transaction: the booking's row stays locked until its messages are
    written, so a cancel or a move waits for them (and then cancels them) rather than
    committing between this check and the messages."""
    booking = (
        Booking.objects.select_for_update(of=("self",))
        .select_related("recipient")
        .filter(id=booking_id)
        .first()
    )
    if booking is None:
        return {"skipped": f"no booking {booking_id}"}
    if not scheduled_for:
        raise JobCancelled("reminder withdrawn")
    if booking.status != BookingStatus.SCHEDULED:
        raise JobCancelled(f"booking {booking.ref} is {booking.status}")
    if dt.datetime.fromisoformat(scheduled_for) != booking.scheduled_for:
        raise JobCancelled(f"booking {booking.ref} moved")
    reminder = Reminder.objects.filter(booking=booking, offset_seconds=offset_seconds)
    if timezone.now() >= booking.scheduled_for:
        reminder.update(status=ReminderStatus.SKIPPED, note="too late: the pickup has begun")
        return {"skipped": "too late"}
    messages = services.send(
        REMINDER_KIND,
        booking.recipient.ref,
        {
            "booking": booking.ref,
            "date": local_date(booking.scheduled_for, booking.recipient),
            "location": booking.location,
        },
        dedupe_key=f"reminder:{booking.id}:{offset_seconds}:{scheduled_for}",
        booking_id=booking.id,
        expires_at=booking.scheduled_for,
    )
    reminder.update(status=ReminderStatus.SENT, note="")
    return {"booking": booking.ref, "offset": offset_seconds, "messages": [m.id for m in messages]}


def local_date(moment: dt.datetime, recipient: Recipient) -> str:
    """``moment`` as the recipient reads it: in their time zone, day and month names in
    their language ("Tue 1 Dec 2026 07:30", "di 1 dec 2026 07:30")."""
    local = moment.astimezone(zoneinfo.ZoneInfo(recipient.time_zone))
    with translation.override(recipient.locale):
        return formats.date_format(local, REMINDER_DATE_FORMAT)


def ensure_upcoming(hours: int = 48) -> int:
    """Schedule the reminders of scheduled bookings in the next ``hours`` that have none
    (bookings written in bulk, say); returns how many bookings got them."""
    now = timezone.now()
    bare = Booking.objects.filter(
        status=BookingStatus.SCHEDULED,
        scheduled_for__gt=now,
        scheduled_for__lte=now + dt.timedelta(hours=hours),
        reminders__isnull=True,
    )
    count = 0
    for booking in bare[:1000]:  # a sweep works in batches and stops
        with transaction.atomic():
            schedule_reminders(booking, now)
        count += 1
    return count

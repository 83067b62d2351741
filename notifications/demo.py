"""The demo company's notification rows (``manage.py seed_demo``, maintenance/seeding.py):
a recipient per customer (ref = the customer code, as billing's) and per driver, the
seed kinds and templates, and bookings for the next pickups with their reminders.

Every demo row is recognisable by its ref (``DEMO-``); ``clear()`` removes exactly them.
``seed()`` is idempotent: a second call finds its rows and creates nothing.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django.db import transaction
from django.utils import timezone

from notifications import reminders
from notifications import seed as seed_rows
from notifications.models import (
    Booking,
    BookingStatus,
    Message,
    MessageKind,
    Recipient,
    RecipientKind,
    Template,
)

ORDER = 30
PREFIX = "DEMO-"
# Bookings (with reminders) for the pickups of today and the next day: enough to see
# reminders go out in a development session without filling the ledger.
BOOKING_DAYS = 2
# Households do not want a text at night; businesses get theirs whenever.
HOUSEHOLD_QUIET_HOURS = (dt.time(22, 0), dt.time(7, 0))
DEFAULT_PICKUP_TIME = dt.time(8, 0)


def driver_ref(truck_code: str) -> str:
    return f"{truck_code}-DRIVER"


def booking_ref(customer_code: str, day: dt.date) -> str:
    return f"DEMO-BK-{customer_code.removeprefix(PREFIX)}-{day:%Y%m%d}"


def _recipients(company: Any) -> list[Recipient]:
    rows = []
    for customer in company.customers:
        quiet = HOUSEHOLD_QUIET_HOURS if customer.kind == "household" else (None, None)
        rows.append(
            Recipient(
                kind=RecipientKind.CUSTOMER,
                ref=customer.code,
                name=customer.name,
                email=customer.email,
                phone=customer.phone,
                locale=customer.locale,
                time_zone=company.timezone,
                quiet_start=quiet[0],
                quiet_end=quiet[1],
            )
        )
    for truck in company.trucks:
        rows.append(
            Recipient(
                kind=RecipientKind.DRIVER,
                ref=driver_ref(truck.code),
                name=truck.driver_name,
                email=truck.driver_email,
                phone=truck.driver_phone,
                locale="nl",
                time_zone=company.timezone,
            )
        )
    return rows


def seed(company: Any) -> dict[str, int]:
    """Create the demo recipients, bookings and reminders that are missing."""
    templates = seed_rows.seed(MessageKind, Template)
    existing = set(Recipient.objects.filter(ref__startswith=PREFIX).values_list("ref", flat=True))
    new_recipients = [r for r in _recipients(company) if r.ref not in existing]
    Recipient.objects.bulk_create(new_recipients)

    zone = zoneinfo.ZoneInfo(company.timezone)
    customers = {c.code: c for c in company.customers}
    ids = dict(Recipient.objects.filter(ref__in=customers).values_list("ref", "id"))
    end = company.today + dt.timedelta(days=BOOKING_DAYS - 1)
    known = set(Booking.objects.filter(ref__startswith=PREFIX).values_list("ref", flat=True))
    now = timezone.now()
    bookings = []
    for code, day in company.pickups(company.today, end):
        customer = customers[code]
        ref = booking_ref(code, day)
        at = dt.datetime.combine(
            day, customer.window[0] if customer.window else DEFAULT_PICKUP_TIME, zone
        )
        if ref in known or at <= now:
            continue
        bookings.append(
            Booking(
                ref=ref,
                recipient_id=ids[code],
                scheduled_for=at,
                location=f"{customer.address}, {customer.city}",
            )
        )
    Booking.objects.bulk_create(bookings)
    scheduled = 0
    with transaction.atomic():
        for booking in Booking.objects.filter(ref__in=[b.ref for b in bookings]):
            scheduled += sum(
                r.status == "scheduled" for r in reminders.schedule_reminders(booking, now)
            )
    return {
        "templates": templates,
        "recipients": len(new_recipients),
        "bookings": len(bookings),
        "reminders": scheduled,
    }


def clear() -> dict[str, int]:
    """Delete the demo recipients with their bookings, reminders and messages. Reminder
    jobs still waiting find no booking and end as a quiet no-op."""
    demo = Recipient.objects.filter(ref__startswith=PREFIX)
    scheduled = Booking.objects.filter(
        recipient__in=demo, status=BookingStatus.SCHEDULED, scheduled_for__gt=timezone.now()
    )
    for ref in scheduled.values_list("ref", flat=True):
        reminders.cancel_booking(ref)  # withdraws their waiting jobs from the ledger
    messages = Message.objects.filter(recipient__in=demo).delete()[1]
    bookings = Booking.objects.filter(recipient__in=demo).delete()[1]
    recipients = demo.delete()[1]
    return {
        "messages": messages.get("notifications.Message", 0),
        "bookings": bookings.get("notifications.Booking", 0),
        "recipients": recipients.get("notifications.Recipient", 0),
    }

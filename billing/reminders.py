"""Payment reminders before, on and after an invoice's due date, and receipts.

When an invoice is issued, one Reminder row per offset of
``settings.BILLING_REMINDER_OFFSETS_DAYS`` (days from the due date; negative = before)
is created and a ``billing.send_reminder`` job scheduled for that day at
``BILLING_REMINDER_HOUR`` in the business time zone. Paying cancels the rows still
scheduled; a job whose row is no longer scheduled sends nothing.

Late reminders (their time passed before the invoice was issued, or before their job
ran): one that announces a due date ("due in 3 days") is skipped, as it would now be
wrong; of those on or after the due date ("due today", "overdue") only the latest is
sent, at once, never a burst of them. Messages go through the notifier of
``settings.BILLING_NOTIFIER`` (billing/notify.py), which decides how the customer is
reached (email, SMS...). docs/billing.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, Reminder, ReminderStatus
from billing.notify import BillingMessage, get_notifier
from queueing import enqueue

log = logging.getLogger(__name__)


def send_time(due: dt.date, offset_days: int) -> dt.datetime:
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    day = due + dt.timedelta(days=offset_days)
    return dt.datetime.combine(day, dt.time(settings.BILLING_REMINDER_HOUR), tzinfo=zone)


def plan(due: dt.date, offsets: list[int], now: dt.datetime) -> dict[int, dt.datetime | None]:
    """When each offset's reminder goes out (None: skipped). Future ones at their time;
    past ones before the due date skipped; of the past ones on or after it, the latest
    now and the others skipped."""
    times = {offset: send_time(due, offset) for offset in offsets}
    late_due = [o for o, at in times.items() if at <= now and o >= 0]
    latest = max(late_due, default=None)
    planned: dict[int, dt.datetime | None] = {}
    for offset, at in times.items():
        if at > now:
            planned[offset] = at
        else:
            planned[offset] = now if offset == latest else None
    return planned


def schedule(invoice: Invoice, now: dt.datetime | None = None) -> list[Reminder]:
    """Create the invoice's reminders and the jobs of those not skipped (in the caller's
    transaction); returns the scheduled ones. Whether the customer can be reached (an
    email address, a phone) is the notifier's business, not a reason to plan nothing."""
    now = now or timezone.now()
    planned = plan(invoice.due_date, settings.BILLING_REMINDER_OFFSETS_DAYS, now)
    Reminder.objects.bulk_create(
        [
            Reminder(
                invoice=invoice,
                offset_days=offset,
                send_at=at or send_time(invoice.due_date, offset),
                status=ReminderStatus.SCHEDULED if at else ReminderStatus.SKIPPED,
            )
            for offset, at in planned.items()
        ],
        ignore_conflicts=True,
    )
    created = list(invoice.reminders.filter(status=ReminderStatus.SCHEDULED))
    for reminder in created:
        enqueue(
            "billing.send_reminder",
            kwargs={"reminder_id": reminder.id},
            run_at=reminder.send_at,
        )
    return created


def cancel_pending(invoice_id: int) -> int:
    """Cancel the invoice's reminders not sent yet; returns how many."""
    return Reminder.objects.filter(invoice_id=invoice_id, status=ReminderStatus.SCHEDULED).update(
        status=ReminderStatus.CANCELLED
    )


def invoice_data(invoice: Invoice) -> dict[str, str]:
    """The variables of the seed's payment_reminder (and the receipt's base)."""
    return {
        "invoice": invoice.number,
        "customer": invoice.customer.name,
        "amount": str(invoice.total),
        "currency": invoice.currency,
        "dueDate": invoice.due_date.isoformat(),
    }


def message_for(invoice: Invoice, kind: str, data: dict[str, str], key: str) -> BillingMessage:
    customer = invoice.customer
    return BillingMessage(
        kind=kind,
        to_email=customer.email,
        customer_name=customer.name,
        data=data,
        key=key,
        recipient_ref=customer.code,
        to_phone=customer.phone,
    )


def reminder_message(invoice: Invoice, key: str) -> BillingMessage:
    return message_for(invoice, "payment_reminder", invoice_data(invoice), key)


def receipt_message(invoice: Invoice) -> BillingMessage:
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    paid = (invoice.paid_at or timezone.now()).astimezone(zone).date()
    data = {**invoice_data(invoice), "paidDate": paid.isoformat()}
    return message_for(invoice, "payment_receipt", data, f"receipt:{invoice.id}")


def _too_late(reminder: Reminder, now: dt.datetime) -> bool:
    """A reminder announcing the due date whose day has passed says something wrong."""
    if reminder.offset_days >= 0:
        return False
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    return now.astimezone(zone).date() >= reminder.invoice.due_date


def send(reminder_id: int) -> str:
    """Send one reminder unless it was cancelled, sent, its invoice is no longer open or
    it comes too late. Call inside a transaction (the job is atomic): the row is marked
    in it, and the notifier queues its messages in it (no network call under the lock)."""
    reminder = (
        Reminder.objects.select_for_update()
        .select_related("invoice__customer")
        .filter(id=reminder_id)
        .first()
    )
    if reminder is None or reminder.status != ReminderStatus.SCHEDULED:
        return "nothing to send"
    invoice = reminder.invoice
    if invoice.status != InvoiceStatus.ISSUED:
        reminder.status = ReminderStatus.CANCELLED
        reminder.save(update_fields=["status"])
        return f"invoice is {invoice.status}"
    now = timezone.now()
    if _too_late(reminder, now):
        reminder.status = ReminderStatus.SKIPPED
        reminder.save(update_fields=["status"])
        log.info("reminder %s of %s: skipped, the due date has come", reminder.id, invoice.number)
        return "too late"
    get_notifier().send(reminder_message(invoice, f"reminder:{reminder.id}"))
    reminder.status = ReminderStatus.SENT
    reminder.sent_at = now
    reminder.save(update_fields=["status", "sent_at"])
    return "sent"


def notify_receipt(invoice_id: int) -> None:
    enqueue("billing.send_receipt", kwargs={"invoice_id": invoice_id})


def send_receipt(invoice_id: int) -> str:
    """Tell the customer their invoice is paid; once per invoice whatever the retries
    (the message's key is the invoice's). Call inside a transaction (the job is atomic)."""
    invoice = Invoice.objects.select_related("customer").filter(id=invoice_id).first()
    if invoice is None:
        return "no such invoice"
    if invoice.status != InvoiceStatus.PAID:
        return f"invoice is {invoice.status}"
    get_notifier().send(receipt_message(invoice))
    return "sent"

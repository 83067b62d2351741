"""Payment reminders before, on and after an invoice's due date, and receipts.

When an invoice is issued, one Reminder row per offset of
``settings.BILLING_REMINDER_OFFSETS_DAYS`` (days from the due date; negative = before)
is created and a ``billing.send_reminder`` job scheduled for that day at
``BILLING_REMINDER_HOUR`` in the business time zone. Paying the invoice cancels the rows
still scheduled; a job whose row is no longer scheduled sends nothing.
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


def schedule(invoice: Invoice) -> list[Reminder]:
    """Create the invoice's reminders and their jobs (in the caller's transaction)."""
    if not invoice.customer.email:
        return []
    Reminder.objects.bulk_create(
        [
            Reminder(
                invoice=invoice, offset_days=offset, send_at=send_time(invoice.due_date, offset)
            )
            for offset in settings.BILLING_REMINDER_OFFSETS_DAYS
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


def reminder_message(invoice: Invoice, key: str) -> BillingMessage:
    return BillingMessage(
        kind="payment_reminder",
        to_email=invoice.customer.email,
        customer_name=invoice.customer.name,
        data={
            "invoice": invoice.number,
            "customer": invoice.customer.name,
            "amount": str(invoice.total),
            "currency": invoice.currency,
            "dueDate": invoice.due_date.isoformat(),
        },
        key=key,
    )


def send(reminder_id: int) -> str:
    """Send one reminder unless it was cancelled, sent, or its invoice is no longer
    open. Call inside a transaction (the job is atomic): the row is marked sent in it."""
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
    get_notifier().send(reminder_message(invoice, f"reminder:{reminder.id}"))
    reminder.status = ReminderStatus.SENT
    reminder.sent_at = timezone.now()
    reminder.save(update_fields=["status", "sent_at"])
    return "sent"


def notify_receipt(invoice_id: int) -> None:
    enqueue("billing.send_receipt", kwargs={"invoice_id": invoice_id})


def send_receipt(invoice_id: int) -> str:
    invoice = Invoice.objects.select_related("customer").filter(id=invoice_id).first()
    if invoice is None or not invoice.customer.email:
        return "no recipient"
    message = reminder_message(invoice, f"receipt:{invoice.id}")
    get_notifier().send(
        BillingMessage(
            "payment_receipt", message.to_email, message.customer_name, message.data, message.key
        )
    )
    return "sent"

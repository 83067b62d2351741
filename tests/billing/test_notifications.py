"""Billing's customer messages through the notifications app: one Message per reminder
and per receipt whatever the retries, customers reached however notifications can,
late reminders skipped, nothing sent under billing's transaction, and a receipt that
reaches the SendGrid fake through real workers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

import queueing
from billing import notify, payments, reminders, runs, services
from billing.models import Invoice, InvoiceStatus, Payment, ReminderStatus
from devstack.fakes import sendgrid as sendgrid_fake
from notifications.models import Message, MessageStatus, Recipient, RecipientKind
from tests.billing import factories
from tests.factories import forget_provider
from tests.harness import delete_keys, start_worker, wait_until


def issued(**customer_fields) -> Invoice:
    factories.tax_rule()
    owner = factories.customer(**customer_fields)
    deal = factories.contract(owner)
    factories.pickups(deal, factories.weekly(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
    return owner.invoices.get(number=runs.bill(owner.id, "2026-11")["invoice"])


def pay(invoice: Invoice) -> str:
    payment = Payment.objects.create(
        invoice=invoice, idempotency_key=f"k-{invoice.id}", amount=invoice.total, currency="EUR"
    )
    return payments.record_intent_event(
        "payment_intent.succeeded",
        {
            "id": f"pi_{invoice.id}",
            "amount_received": int(invoice.total * 100),
            "currency": "eur",
            "metadata": {"taskyard_payment": str(payment.id)},
        },
    )


@pytest.mark.django_db
def test_a_reminder_is_one_notification_to_the_billing_customer_and_a_resend_adds_none(kinds):
    invoice = issued()
    reminder = invoice.reminders.order_by("send_at").first()
    with transaction.atomic():
        assert reminders.send(reminder.id) == "sent"
    [message] = Message.objects.all()
    customer = invoice.customer
    assert (message.kind, message.channel, message.to) == (
        "payment_reminder",
        "email",
        customer.email,
    )
    assert message.status == MessageStatus.QUEUED and message.job_id is not None
    assert invoice.number in message.subject and f"EUR {invoice.total}" in message.body
    recipient = Recipient.objects.get(ref=customer.code)
    assert (recipient.kind, recipient.name, recipient.email) == (
        RecipientKind.CUSTOMER,
        customer.name,
        customer.email,
    )
    # The job ran again after its commit was lost, say: the same key, no second message.
    notify.get_notifier().send(reminders.reminder_message(invoice, f"reminder:{reminder.id}"))
    assert Message.objects.count() == 1
    assert queueing.Job.objects.filter(task_name="notifications.deliver_email").count() == 1


@pytest.mark.django_db
def test_a_receipt_is_one_notification_even_when_its_job_runs_twice(kinds):
    invoice = issued()
    assert pay(invoice) == "succeeded"
    assert queueing.Job.objects.filter(task_name="billing.send_receipt").count() == 1
    assert reminders.send_receipt(invoice.id) == "sent"
    assert reminders.send_receipt(invoice.id) == "sent"  # a retry after a lost outcome
    [receipt] = Message.objects.filter(kind="payment_receipt")
    invoice.refresh_from_db()
    paid_on = invoice.paid_at.astimezone(ZoneInfo("Europe/Amsterdam")).date().isoformat()
    assert receipt.subject == f"Receipt: invoice {invoice.number} is paid"
    assert f"EUR {invoice.total}" in receipt.body and paid_on in receipt.body
    assert receipt.dedupe_key == f"billing:receipt:{invoice.id}:email"


@pytest.mark.django_db
def test_a_customer_with_only_a_phone_is_reminded_by_text(kinds):
    invoice = issued(email="", phone="+31611112222")
    assert invoice.reminders.filter(status=ReminderStatus.SCHEDULED).count() == 3
    reminders.send(invoice.reminders.order_by("send_at").first().id)
    [text] = Message.objects.all()
    assert (text.channel, text.to) == ("sms", "+31611112222") and invoice.number in text.body


@pytest.mark.django_db
def test_billing_contact_details_win_and_a_detail_billing_lacks_is_kept(kinds):
    invoice = issued(email="new@example.org")
    code = invoice.customer.code
    Recipient.objects.create(
        ref=code, kind=RecipientKind.CUSTOMER, name="Old", email="old@example.org", phone="+316"
    )
    reminders.send(invoice.reminders.order_by("send_at").first().id)
    recipient = Recipient.objects.get(ref=code)
    assert (recipient.email, recipient.phone) == ("new@example.org", "+316")
    assert sorted(Message.objects.values_list("channel", "to")) == [
        ("email", "new@example.org"),
        ("sms", "+316"),
    ]


def test_late_reminders_before_the_due_date_are_skipped_and_one_late_due_one_goes_now(settings):
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    due = dt.date(2026, 12, 10)
    offsets = [-3, 0, 7]
    # Issued on the due date after the reminder hour (payment terms of 0 days, a late run).
    now = dt.datetime(2026, 12, 10, 11, 0, tzinfo=zone)
    assert reminders.plan(due, offsets, now) == {
        -3: None,
        0: now,
        7: dt.datetime(2026, 12, 17, 9, 0, tzinfo=zone),
    }
    # Long after: only the latest of the late due/overdue ones, never a burst.
    later = dt.datetime(2026, 12, 20, 8, 0, tzinfo=zone)
    assert reminders.plan(due, [-3, 0, 7, 14], later) == {
        -3: None,
        0: None,
        7: later,
        14: dt.datetime(2026, 12, 24, 9, 0, tzinfo=zone),
    }


@pytest.mark.django_db
def test_an_issued_invoice_plans_its_late_reminders_and_a_late_job_says_nothing_wrong(
    settings, kinds
):
    settings.BILLING_REMINDER_OFFSETS_DAYS = [-3, 0, 7]
    invoice = issued(payment_terms_days=0)
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    nine = dt.datetime.combine(invoice.due_date, dt.time(9), tzinfo=zone)
    statuses = dict(invoice.reminders.values_list("offset_days", "status"))
    assert statuses[-3] == ReminderStatus.SKIPPED and statuses[7] == ReminderStatus.SCHEDULED
    assert statuses[0] == ReminderStatus.SCHEDULED  # due today: at 09:00, or now if later
    jobs = queueing.Job.objects.filter(task_name="billing.send_reminder")
    assert jobs.count() == 2
    due_today = invoice.reminders.get(offset_days=0)
    assert nine <= due_today.send_at <= max(nine, timezone.now())

    # A reminder announcing the due date whose job runs after it (workers were down).
    early = invoice.reminders.get(offset_days=-3)
    early.status = ReminderStatus.SCHEDULED
    early.save()
    assert reminders.send(early.id) == "too late"
    early.refresh_from_db()
    assert early.status == ReminderStatus.SKIPPED and not Message.objects.exists()


@pytest.mark.django_db
def test_the_email_fallback_sends_after_the_commit_never_inside_the_transaction(
    settings, django_capture_on_commit_callbacks
):
    settings.BILLING_NOTIFIER = "billing.notify.EmailNotifier"
    invoice = issued()
    reminder = invoice.reminders.order_by("send_at").first()
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        assert reminders.send(reminder.id) == "sent"
        assert mail.outbox == []  # the reminder row is locked: no SMTP now
    assert len(callbacks) == 1
    [email] = mail.outbox
    assert email.to == [invoice.customer.email] and invoice.number in email.subject
    # Without an address the fallback has nobody to write to: nothing, and no error.
    notify.EmailNotifier().send(notify.BillingMessage("payment_reminder", "", "Nobody", {}))
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_receipt_reaches_the_sendgrid_fake_through_real_workers(kinds, relay, settings):
    """billing.send_receipt and the email delivery it queues run on a worker of this
    test (the isolated queue), whose SendGrid points at a fake counting what it gets."""
    forget_provider("sendgrid")
    delete_keys("taskyard:rate:notifications.*")
    settings.NOTIFICATIONS_QUEUE = "isolated"
    factories.tax_rule()
    owner = factories.billed_customer()
    # Issued and paid without their follow-up jobs (charge, PDF), which the session
    # worker would run: this test is about the receipt only.
    invoice, _ = services.issue_invoice(owner, services.get_period("2026-11"))
    Invoice.objects.filter(id=invoice.id).update(status=InvoiceStatus.PAID, paid_at=timezone.now())
    with sendgrid_fake.serve() as fake:
        worker = start_worker(
            queues=["isolated"],
            env={"NOTIFICATIONS_QUEUE": "isolated", "SENDGRID_API_BASE": fake.url},
        )
        try:
            for _ in range(2):  # the receipt job twice, as a duplicated webhook might
                queueing.enqueue(
                    "billing.send_receipt", kwargs={"invoice_id": invoice.id}, queue="isolated"
                )

            def receipt_sent() -> bool:
                return Message.objects.filter(
                    kind="payment_receipt", status__in=[MessageStatus.SENT, MessageStatus.DELIVERED]
                ).exists()

            wait_until(receipt_sent, timeout=60, message=lambda: f"log:\n{worker.log()}")
            jobs = queueing.Job.objects.filter(task_name="billing.send_receipt")
            wait_until(
                lambda: set(jobs.values_list("status", flat=True)) == {"succeeded"},
                timeout=60,
                message=lambda: f"{list(jobs.values_list('status', flat=True))}",
            )
        finally:
            worker.stop()
        sent = list(fake.messages)
    assert Message.objects.filter(kind="payment_receipt").count() == 1
    [email] = sent
    payload = email["payload"]
    assert payload["personalizations"][0]["to"][0]["email"] == invoice.customer.email
    assert payload["subject"] == f"Receipt: invoice {invoice.number} is paid"
    assert invoice.number in payload["content"][0]["value"]

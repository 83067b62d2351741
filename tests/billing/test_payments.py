"""Charging through stripe-python against the Stripe fake (in this process), what each
Stripe answer means for the retry policy, the webhook handler, reminders and receipts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import stripe

from billing import notify, payments, reminders, runs, services
from billing.models import (
    InvoiceStatus,
    Payment,
    PaymentProblem,
    PaymentStatus,
    Reminder,
    ReminderStatus,
)
from billing.notify import BillingMessage
from devstack.fakes import stripe as stripe_fake
from notifications.models import Message
from queueing import Job, ProviderDeferred
from queueing.ledger.retry import FailureKind, classify
from tests.billing import factories
from tests.factories import forget_provider


@pytest.fixture
def fake(settings):
    """A Stripe fake in this process, and this process's settings pointed at it."""
    forget_provider("stripe")
    with stripe_fake.serve() as server:
        stripe_spec = {**settings.TASKYARD_PROVIDERS["stripe"], "base_url": server.url}
        settings.TASKYARD_PROVIDERS = {**settings.TASKYARD_PROVIDERS, "stripe": stripe_spec}
        yield server
    forget_provider("stripe")


def invoice_for(method: str = "pm_card_visa"):
    factories.tax_rule()
    owner = factories.customer(stripe_payment_method=method)
    deal = factories.contract(owner)
    factories.pickups(deal, factories.weekly(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
    result = runs.bill(owner.id, "2026-11")
    return owner.invoices.get(number=result["invoice"])


def event_of(fake, event_type: str) -> dict:
    return next(e for e in reversed(fake.events) if e["type"] == event_type)["data"]["object"]


@pytest.mark.django_db
def test_a_charge_is_one_payment_intent_whatever_the_retries(fake):
    invoice = invoice_for()
    first = payments.charge(invoice)
    again = payments.charge(invoice)  # a duplicated or retried job
    assert first["intent"] == again["intent"]
    assert len(fake.payment_intents) == 1
    intent = fake.payment_intents[first["intent"]]
    assert intent["amount"] == int(invoice.total * 100) and intent["currency"] == "eur"
    assert intent["metadata"]["invoice"] == invoice.number
    replayed = [r for r in fake.requests if r.route == "payment_intents.create"]
    assert [r.header("Idempotency-Key") for r in replayed] == [f"taskyard-{invoice.number}-1"] * 2
    # The answer is not the outcome: only the webhook marks the invoice paid.
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PROCESSING
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED


@pytest.mark.django_db
def test_the_webhook_pays_the_invoice_cancels_reminders_and_sends_a_receipt_once(fake):
    invoice = invoice_for()
    assert invoice.reminders.filter(status=ReminderStatus.SCHEDULED).count() == 3
    payments.charge(invoice)
    succeeded = event_of(fake, "payment_intent.succeeded")
    assert payments.record_intent_event("payment_intent.succeeded", succeeded) == "succeeded"
    assert (
        payments.record_intent_event("payment_intent.succeeded", succeeded) == "already succeeded"
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.paid_at is not None
    assert set(invoice.reminders.values_list("status", flat=True)) == {ReminderStatus.CANCELLED}
    assert Job.objects.filter(task_name="billing.send_receipt").count() == 1
    assert (
        Job.objects.filter(task_name="billing.render_document", kwargs__kind="receipt").count() == 1
    )
    assert payments.record_intent_event("payment_intent.succeeded", {"id": "pi_other"}) == (
        "not a billing payment"
    )


def succeeded(fake, invoice, **changes) -> dict:
    """Charge ``invoice`` at the fake and return its payment_intent.succeeded object."""
    payments.charge(invoice)
    return {**event_of(fake, "payment_intent.succeeded"), **changes}


@pytest.mark.django_db
def test_a_payment_on_an_invoice_voided_meanwhile_is_flagged_for_a_refund(fake, caplog):
    invoice = invoice_for()
    intent = succeeded(fake, invoice)
    services.credit_invoice(invoice, "customer moved away")  # before Stripe's webhook came
    with caplog.at_level("ERROR", logger="billing.payments"):
        outcome = payments.record_intent_event("payment_intent.succeeded", intent)
    assert outcome == "succeeded, flagged refund_due"
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.problem == PaymentProblem.REFUND_DUE
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and invoice.paid_at is None
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    text = record.getMessage()
    assert f"payment {payment.id}" in text and f"invoice {invoice.number} (id {invoice.id})" in text
    assert "refund due" in text
    assert not Job.objects.filter(task_name="billing.send_receipt").exists()
    # Processed again (Stripe retries webhooks): still one flag, nothing more.
    assert payments.record_intent_event("payment_intent.succeeded", intent) == "already succeeded"


@pytest.mark.django_db
def test_another_amount_than_the_invoice_s_does_not_mark_it_paid(fake, caplog):
    invoice = invoice_for()
    intent = succeeded(fake, invoice, amount_received=int(invoice.total * 100) - 1)
    with caplog.at_level("ERROR", logger="billing.payments"):
        outcome = payments.record_intent_event("payment_intent.succeeded", intent)
    assert outcome == "succeeded, flagged amount_mismatch"
    payment = Payment.objects.get()
    assert (payment.status, payment.problem) == (
        PaymentStatus.SUCCEEDED,
        PaymentProblem.AMOUNT_MISMATCH,
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED and invoice.paid_at is None
    assert invoice.reminders.filter(status=ReminderStatus.SCHEDULED).count() == 3  # still owed
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert f"invoice {invoice.number} (id {invoice.id})" in record.getMessage()
    assert not Job.objects.filter(task_name="billing.send_receipt").exists()


@pytest.mark.django_db
def test_a_declined_card_is_permanent_and_a_new_card_is_a_new_payment(fake):
    invoice = invoice_for("pm_card_chargeDeclined")
    with pytest.raises(payments.CardDeclined) as declined:
        payments.charge(invoice)
    assert classify(declined.value).kind is FailureKind.PERMANENT
    failed = event_of(fake, "payment_intent.payment_failed")
    assert payments.record_intent_event("payment_intent.payment_failed", failed) == "failed"
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.FAILED and "declined" in payment.error
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED  # still owed: reminders go on

    invoice.customer.stripe_payment_method = "pm_card_visa"
    invoice.customer.save()
    invoice.refresh_from_db()
    result = payments.charge(invoice)
    assert Payment.objects.get(stripe_payment_intent_id=result["intent"]).idempotency_key == (
        f"taskyard-{invoice.number}-2"
    )
    assert len(fake.payment_intents) == 2


@pytest.mark.django_db
def test_stripe_5xx_is_transient_and_429_defers_without_spending_an_attempt(fake):
    invoice = invoice_for()
    payments.ensure_stripe_customer(invoice.customer)
    fake.fail_next(500)
    with pytest.raises(stripe.APIError) as server_error:
        payments.charge(invoice)
    assert classify(server_error.value).kind is FailureKind.TRANSIENT
    fake.fail_next(429, retry_after=1)
    with pytest.raises(ProviderDeferred):
        payments.charge(invoice)
    assert fake.payment_intents == {}  # as at Stripe, a failed request created nothing
    forget_provider("stripe")
    payments.charge(invoice)
    assert len(fake.payment_intents) == 1


@pytest.mark.django_db
def test_reminders_before_on_and_after_the_due_date_and_none_once_paid(settings, kinds):
    settings.BILLING_REMINDER_OFFSETS_DAYS = [-3, 0, 7]
    invoice = invoice_for()
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    rows = list(invoice.reminders.order_by("send_at"))
    due = invoice.due_date
    assert [r.send_at.astimezone(zone) for r in rows] == [
        dt.datetime.combine(due + dt.timedelta(days=d), dt.time(9), tzinfo=zone) for d in (-3, 0, 7)
    ]
    jobs = Job.objects.filter(task_name="billing.send_reminder").order_by("run_at")
    assert [j.run_at for j in jobs] == [r.send_at for r in rows]

    assert reminders.send(rows[0].id) == "sent"
    assert reminders.send(rows[0].id) == "nothing to send"  # a second delivery of the job
    [email] = Message.objects.filter(kind="payment_reminder")
    assert email.to == invoice.customer.email and invoice.number in email.subject
    assert f"EUR {invoice.total}" in email.body and due.isoformat() in email.body

    Payment.objects.create(
        invoice=invoice, idempotency_key="k", amount=invoice.total, currency="EUR"
    )
    payments.record_intent_event(
        "payment_intent.succeeded",
        {
            "id": "pi_1",
            "amount": int(invoice.total * 100),
            "metadata": {"taskyard_payment": str(Payment.objects.get().id)},
        },
    )
    assert reminders.send(rows[1].id) == "nothing to send"
    assert Message.objects.filter(kind="payment_reminder").count() == 1
    assert Reminder.objects.filter(status=ReminderStatus.CANCELLED).count() == 2


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[BillingMessage] = []

    def send(self, message: BillingMessage) -> None:
        self.sent.append(message)


@pytest.fixture
def fresh_notifiers():
    """Notifiers are made once per dotted path: each test gets its own instances."""
    notify._notifier.cache_clear()
    yield
    notify._notifier.cache_clear()


@pytest.mark.django_db
def test_the_notifier_is_a_setting_another_sender_can_replace(settings, fresh_notifiers):
    settings.BILLING_NOTIFIER = f"{__name__}.RecordingNotifier"
    recorder = notify.get_notifier()
    invoice = invoice_for()
    reminders.send(invoice.reminders.first().id)
    [message] = recorder.sent
    assert message.kind == "payment_reminder" and not Message.objects.exists()
    assert message.recipient_ref == invoice.customer.code
    assert message.key == f"reminder:{invoice.reminders.first().id}"
    assert message.data == {
        "invoice": invoice.number,
        "customer": invoice.customer.name,
        "amount": str(invoice.total),
        "currency": "EUR",
        "dueDate": invoice.due_date.isoformat(),
    }


@pytest.mark.django_db
def test_a_second_bill_of_the_same_period_adds_no_invoice_nor_follow_up():
    invoice = invoice_for()
    again = runs.bill(invoice.customer_id, "2026-11")
    assert again == {"invoice": invoice.number, "total": str(invoice.total), "created": False}
    assert Job.objects.filter(task_name="billing.charge_invoice").count() == 1
    assert services.billable_customers(invoice.period).count() == 1

"""Messages go out through a real worker to the provider fakes over HTTP, and their
statuses come back through the providers' callbacks (datasync's inbound webhooks)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import zoneinfo

import pytest
from django.db import transaction
from django.utils import timezone

import queueing
from notifications import services
from notifications.models import (
    Message,
    MessageStatus,
    PushSubscription,
    Suppression,
    SuppressionReason,
    WebhookEndpoint,
)
from queueing import Job, JobStatus
from tests.harness import wait_until
from tests.notifications.conftest import BOUNCING, QUEUE, make_recipient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

CONTEXT = {"booking": "B-1", "date": "Tue 1 Dec 2026 07:30", "location": "Oudegracht 1"}


def statuses(**filters) -> dict[str, str]:
    return dict(Message.objects.filter(**filters).values_list("channel", "status"))


def test_email_sms_push_and_webhook_go_out_and_their_statuses_come_back(worker, fakes, kinds):
    recipient = make_recipient()
    subscription = fakes["push"].subscribe()
    PushSubscription.objects.create(
        recipient=recipient,
        endpoint=subscription["endpoint"],
        p256dh=subscription["keys"]["p256dh"],
        auth=subscription["keys"]["auth"],
    )
    endpoint = WebhookEndpoint.objects.create(
        recipient=recipient, url=f"{fakes['receiver'].url}/hooks/taskyard", secret="whsec-cust"
    )
    with transaction.atomic():
        messages = services.send("booking_reminder", recipient.ref, CONTEXT)
    assert sorted(m.channel for m in messages) == ["email", "push", "sms", "webhook"]

    def all_final() -> bool:
        return set(statuses(recipient=recipient).values()) == {MessageStatus.DELIVERED}

    wait_until(all_final, timeout=30, message=lambda: f"all delivered: {statuses()}")

    # What the providers received, in their own shapes.
    mail = fakes["sendgrid"].messages
    assert [m["payload"]["personalizations"][0]["to"][0]["email"] for m in mail] == [
        "anna@example.com"
    ]
    assert "Oudegracht 1" in mail[0]["payload"]["content"][0]["value"]
    sms = list(fakes["twilio"].messages.values())
    assert [(m["to"], m["body"]) for m in sms] == [
        ("+31612345678", "Taskyard: pickup B-1 at Oudegracht 1 on Tue 1 Dec 2026 07:30.")
    ]
    [pushed] = fakes["push"].payloads()
    assert pushed["title"] == "Pickup Tue 1 Dec 2026 07:30" and pushed["kind"] == "booking_reminder"
    [hook] = fakes["receiver"].received("/hooks/taskyard")
    stamp = hook.header("X-Taskyard-Timestamp")
    expected = hmac.new(b"whsec-cust", f"{stamp}.".encode() + hook.body, hashlib.sha256)
    assert hook.header("X-Taskyard-Signature") == f"sha256={expected.hexdigest()}"
    assert json.loads(hook.body)["data"]["booking"] == "B-1"

    # The delivery log: provider ids, the template version, the SMS's cost; the
    # callbacks that moved email and SMS to delivered were verified and stored.
    email = Message.objects.get(channel="email")
    text = Message.objects.get(channel="sms")
    assert text.provider_message_id == sms[0]["sid"] and text.cost > 0
    assert email.provider_message_id and email.template_version == 1
    assert text.delivered_at >= text.sent_at
    twilio_posts = [d.status for d in fakes["twilio"].deliveries]
    assert twilio_posts == [202, 202]  # sent, delivered
    assert [d.status for d in fakes["sendgrid"].deliveries] == [202]
    assert endpoint.__class__.objects.get().failure_streak == 0


def test_a_bounce_suppresses_the_next_send(worker, fakes, kinds):
    recipient = make_recipient(email=BOUNCING, phone="")
    with transaction.atomic():
        [first] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")
    wait_until(
        lambda: Message.objects.get(id=first.id).status == MessageStatus.BOUNCED,
        timeout=20,
        message="bounced",
    )
    suppression = Suppression.objects.get(address=BOUNCING)
    assert suppression.reason == SuppressionReason.BOUNCE

    with transaction.atomic():
        [second] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")
    assert second.status == MessageStatus.SUPPRESSED
    assert len(fakes["sendgrid"].messages) == 1


def test_quiet_hours_hold_a_message_and_release_it_urgent_ones_go(worker, fakes, kinds):
    zone = zoneinfo.ZoneInfo("Europe/Amsterdam")
    now = timezone.now().astimezone(zone)
    ends = now + dt.timedelta(seconds=4)
    recipient = make_recipient(
        time_zone="Europe/Amsterdam",
        quiet_start=(now - dt.timedelta(hours=1)).time(),
        quiet_end=ends.time(),
    )
    with transaction.atomic():
        [held] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="sms")
        [urgent] = services.send(
            "booking_reminder",
            recipient.ref,
            {**CONTEXT, "booking": "B-2"},
            channel="sms",
            urgent=True,
        )
    wait_until(
        lambda: Message.objects.get(id=urgent.id).status == MessageStatus.DELIVERED,
        timeout=20,
        message="the urgent message delivered",
    )
    held.refresh_from_db()
    assert held.status == MessageStatus.QUEUED and held.held_until is not None
    assert len(fakes["twilio"].messages) == 1

    wait_until(
        lambda: Message.objects.get(id=held.id).status == MessageStatus.DELIVERED,
        timeout=20,
        message="the held message released and delivered",
    )
    release = [r for r in fakes["twilio"].requests if "B-1" in r.body.decode()]
    assert len(release) == 1
    assert release[0].at >= ends.replace(microsecond=0).timestamp()


def test_a_message_behind_a_dead_delivery_job_is_marked_failed_by_the_sweep(worker, fakes, kinds):
    """Twilio refuses the send with a 400 the ledger does not retry: the delivery job
    dies on its first attempt, which is not its last, so the message stays queued until
    the sweep (the hourly job, run here on the worker) marks it failed with the reason."""
    recipient = make_recipient(email="")
    fakes["twilio"].fail_next(400)
    with transaction.atomic():
        [message] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="sms")
    job = wait_until(
        lambda: Job.objects.filter(id=message.job_id, status=JobStatus.DEAD).first(),
        timeout=20,
        message="the delivery job dead",
    )
    assert Message.objects.get(id=message.id).status == MessageStatus.QUEUED

    with transaction.atomic():
        sweep = queueing.enqueue("notifications.settle_dead_deliveries", queue=QUEUE)
    wait_until(
        lambda: Job.objects.get(id=sweep.id).status == JobStatus.SUCCEEDED,
        timeout=20,
        message="the sweep ran",
    )
    assert Job.objects.get(id=sweep.id).result == {"failed": 1, "cancelled": 0}
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error.startswith(f"the delivery job {job.id} failed for good (")
    assert "400" in message.error
    assert fakes["twilio"].count("messages.create") == 1


def test_a_scheduled_message_is_held_until_its_time_then_sent(worker, fakes, kinds):
    """Its delivery job waits in the ledger until send_at: what Twilio received came at
    or after that moment."""
    recipient = make_recipient(email="")
    at = timezone.now() + dt.timedelta(seconds=3)
    with transaction.atomic():
        [later] = services.send("booking_reminder", recipient.ref, CONTEXT, send_at=at)
    wait_until(
        lambda: Message.objects.get(id=later.id).status == MessageStatus.DELIVERED,
        timeout=20,
        message="the scheduled message sent",
    )
    [sent] = [r for r in fakes["twilio"].requests if r.route == "messages.create"]
    assert sent.at >= at.timestamp()
    assert Message.objects.get(id=later.id).sent_at >= at

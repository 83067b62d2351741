"""What SendGrid's events do to the delivery log, applied as datasync's processing job
applies them (tracking.sendgrid_events): a spam complaint suppresses the address, opens
and clicks are recorded on the message. No worker: the events are given directly."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from notifications import batches, services, tracking
from notifications.models import Message, MessageStatus, Suppression, SuppressionReason
from tests.api.conftest import client_for, make_user
from tests.notifications.conftest import make_recipient

pytestmark = pytest.mark.django_db

CONTEXT = {"booking": "B-1", "date": "Tue 1 Dec 2026 07:30", "location": "Oudegracht 1"}
# SendGrid's event timestamps are Unix seconds.
OPENED, CLICKED, OPENED_AGAIN = 1_800_000_000, 1_800_000_060, 1_800_000_600


def event(name: str, message: Message, **fields) -> dict:
    """One event as SendGrid posts it, with anymail's metadata (our message id)."""
    return {
        "event": name,
        "email": message.to,
        "timestamp": OPENED,
        "sg_event_id": f"{name}-{message.id}",
        "taskyard_message_id": str(message.id),
        **fields,
    }


def delivered_email(recipient_ref: str) -> Message:
    [email] = services.send("booking_reminder", recipient_ref, CONTEXT, channel="email")
    Message.objects.filter(id=email.id).update(
        status=MessageStatus.DELIVERED, provider_message_id=f"anymail-{email.id}"
    )
    email.refresh_from_db()
    return email


def test_a_spam_complaint_suppresses_the_address_in_any_case(kinds):
    recipient = make_recipient(email="Anna@Example.com")
    email = delivered_email(recipient.ref)
    # Made before the complaint, still waiting for its delivery job.
    [waiting] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")

    complaint = event("spamreport", email, email="anna@example.com")
    assert tracking.sendgrid_events([complaint], timezone.now()) == {"events": 1, "applied": 1}

    suppression = Suppression.objects.get()
    assert (suppression.channel, suppression.address, suppression.reason) == (
        "email",
        "anna@example.com",
        SuppressionReason.COMPLAINT,
    )
    # The complaint does not rewrite what happened to the message itself.
    assert Message.objects.get(id=email.id).status == MessageStatus.DELIVERED
    # The waiting email is not sent, the next one is not even queued; SMS still go.
    assert services.deliver(waiting.id)["status"] == MessageStatus.SUPPRESSED
    [later] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")
    assert (later.status, later.error) == (MessageStatus.SUPPRESSED, "the address is suppressed")
    assert later.job_id is None
    [text] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="sms")
    assert text.status == MessageStatus.QUEUED

    # A second complaint (SendGrid may post it again) keeps the one suppression.
    tracking.sendgrid_events([complaint], timezone.now())
    assert Suppression.objects.count() == 1


def test_a_complaint_about_an_address_stops_a_batch_to_it(kinds):
    make_recipient("C1", email="Anna@Example.com", phone="")
    make_recipient("C2", email="bob@example.com", phone="")
    tracking.suppress("email", "ANNA@example.com", SuppressionReason.COMPLAINT)
    batch = batches.start("booking_reminder", ["C1", "C2"], CONTEXT, channel="email")
    batches.send_chunk(batch.id, ["C1", "C2"])
    statuses = dict(Message.objects.values_list("recipient__ref", "status"))
    assert statuses == {"C1": MessageStatus.SUPPRESSED, "C2": MessageStatus.QUEUED}


def test_opens_and_clicks_are_recorded_on_the_message_once(kinds):
    recipient = make_recipient()
    email = delivered_email(recipient.ref)
    events = [
        event("open", email, timestamp=OPENED),
        # Found by anymail's id when the metadata is missing.
        {
            "event": "click",
            "email": email.to,
            "timestamp": CLICKED,
            "url": "https://example.com/x",
            "anymail_id": email.provider_message_id,
        },
        event("open", email, timestamp=OPENED_AGAIN),  # a second open: the first stays
    ]
    assert tracking.sendgrid_events(events, timezone.now()) == {"events": 3, "applied": 3}

    email.refresh_from_db()
    assert email.opened_at == dt.datetime.fromtimestamp(OPENED, tz=dt.UTC)
    assert email.clicked_at == dt.datetime.fromtimestamp(CLICKED, tz=dt.UTC)
    assert email.status == MessageStatus.DELIVERED  # engagement is not a status
    assert not Suppression.objects.exists()

    # What a dispatcher reads in the recipient's history.
    url = f"/api/v1/queue/notifications/recipients/{recipient.ref}/messages"
    [row] = client_for(make_user("dispatcher")).get(url).json()["results"]
    assert row["opened_at"].startswith("2027-01-15T08:00:00")
    assert row["clicked_at"].startswith("2027-01-15T08:01:00")


def test_engagement_of_a_message_that_is_not_ours_is_ignored(kinds):
    long_ago = timezone.now() - tracking.UNKNOWN_ID_GRACE - dt.timedelta(seconds=1)
    stray = {"event": "open", "timestamp": OPENED, "anymail_id": "someone-elses"}
    assert tracking.sendgrid_events([stray], long_ago) == {"events": 1, "applied": 0}
    assert not Message.objects.filter(opened_at__isnull=False).exists()

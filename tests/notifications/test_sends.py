"""Sends at service level, no worker: scheduled delivery (send_at), segment batches
(also beyond NOTIFICATIONS_BATCH_MAX_RECIPIENTS), and one webhook endpoint's breaker
opening without stopping another endpoint. The jobs' bodies are run here by calling the
services they call, with the arguments the jobs were enqueued with."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from devstack.fakes import webhooks as receiver_fake
from notifications import batches, services, tasks
from notifications.models import Batch, Message, MessageStatus, RecipientKind, WebhookEndpoint
from queueing import Job, JobStatus, PermanentError, ProviderDeferred
from tests.api.conftest import client_for, make_user
from tests.factories import forget_provider
from tests.harness import delete_keys
from tests.notifications.conftest import make_recipient

pytestmark = pytest.mark.django_db

CONTEXT = {"booking": "B-1", "date": "Tue 1 Dec 2026 07:30", "location": "Oudegracht 1"}
SEND_URL = "/api/v1/queue/notifications"


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:rate:api:*")


def run_chunks() -> None:
    """What the chunk jobs do, with their own arguments (JSON, as the worker gets them)."""
    for job in Job.objects.filter(task_name="notifications.send_batch_chunk").order_by("id"):
        batches.send_chunk(**job.kwargs)


# --- Scheduled delivery -----------------------------------------------------------------


def test_a_scheduled_message_waits_in_a_job_due_at_its_time(kinds):
    make_recipient()
    at = timezone.now() + dt.timedelta(hours=2)
    [text] = services.send("booking_reminder", "DEMO-C0001", CONTEXT, channel="sms", send_at=at)
    job = Job.objects.get(id=text.job_id)
    assert (text.status, text.send_at) == (MessageStatus.QUEUED, at)
    assert (job.status, job.run_at) == (JobStatus.SCHEDULED, at)


def test_send_at_through_the_api_reaches_each_batch_message_and_its_job(kinds):
    make_recipient("C1")
    make_recipient("C2", email="")
    body = {
        "kind": "booking_reminder",
        "recipients": ["C1", "C2"],
        "context": CONTEXT,
        "channel": "sms",
        "send_at": "2030-01-02T06:00:00Z",
    }
    response = client_for(make_user("dispatcher")).post(SEND_URL, body, format="json")
    assert response.status_code == 202, response.content
    kwargs = Job.objects.get(id=response.json()["id"]).kwargs
    assert tasks.send_batch.run(**kwargs)["recipients"] == 2
    run_chunks()

    at = dt.datetime(2030, 1, 2, 6, 0, tzinfo=dt.UTC)
    messages = Message.objects.order_by("recipient__ref")
    assert [(m.recipient.ref, m.send_at) for m in messages] == [("C1", at), ("C2", at)]
    jobs = Job.objects.filter(id__in=[m.job_id for m in messages])
    assert {(j.status, j.run_at) for j in jobs} == {(JobStatus.SCHEDULED, at)}


# --- Segments ---------------------------------------------------------------------------


@pytest.fixture
def eleven_customers_one_driver(db) -> list[str]:
    refs = [make_recipient(f"C{n:02d}", email="").ref for n in range(11)]
    make_recipient("D01", kind=RecipientKind.DRIVER, email="")
    return refs


def test_a_segment_larger_than_a_batch_goes_out_in_batches_within_the_limit(
    kinds, settings, eleven_customers_one_driver
):
    settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS = 4
    settings.NOTIFICATIONS_BATCH_CHUNK = 3
    result = tasks.send_batch.run(
        kind="booking_reminder", segment="customers", context=CONTEXT, channel="sms"
    )
    assert result["recipients"] == 11
    made = Batch.objects.filter(id__in=result["batches"]).order_by("id")
    assert [b.recipient_count for b in made] == [4, 4, 3]
    chunks = Job.objects.filter(task_name="notifications.send_batch_chunk")
    assert sorted(len(j.kwargs["refs"]) for j in chunks) == [1, 1, 3, 3, 3]

    run_chunks()
    run_chunks()  # a chunk job run again makes nothing new
    sent = list(Message.objects.values_list("recipient__ref", flat=True))
    assert sorted(sent) == eleven_customers_one_driver  # each customer once, no driver


def test_an_empty_segment_records_an_empty_batch(kinds):
    result = tasks.send_batch.run(kind="booking_reminder", segment="drivers", context=CONTEXT)
    assert result == {"batches": [Batch.objects.get().id], "recipients": 0}
    assert not Job.objects.filter(task_name="notifications.send_batch_chunk").exists()


def test_a_send_that_cannot_work_is_a_permanent_error_not_a_retry(kinds, settings):
    """Arguments that did not come through the API (queueing.enqueue, a replay): too many
    named recipients, an unknown segment or kind. Retrying cannot help, and a misspelt
    segment must not mean everybody."""
    settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS = 2
    make_recipient("C1")
    cases = [
        ({"recipients": ["C1", "C2", "C3"]}, "3 recipients; a batch takes at most 2"),
        ({"segment": "custmers"}, "unknown segment 'custmers'; segments: customers, drivers"),
        ({"segment": "customers", "kind": "nope"}, "unknown message kind 'nope'"),
    ]
    for arguments, error in cases:
        with pytest.raises(PermanentError, match=error):
            tasks.send_batch.run(**{"kind": "booking_reminder", "context": CONTEXT, **arguments})
    assert not Batch.objects.exists() and not Message.objects.exists()


def test_the_api_refuses_more_named_recipients_than_a_batch_takes(kinds, settings):
    settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS = 2
    body = {"kind": "booking_reminder", "recipients": ["C1", "C2", "C3"], "context": CONTEXT}
    dispatcher = client_for(make_user("dispatcher"))
    response = dispatcher.post(SEND_URL, body, format="json")
    assert response.status_code == 400
    assert "at most 2 recipients in one batch" in response.content.decode()
    segment = {"kind": "booking_reminder", "segment": "customers", "context": CONTEXT}
    accepted = dispatcher.post(SEND_URL, segment, format="json")
    assert accepted.status_code == 202, accepted.content  # a segment of any size is split
    assert Job.objects.filter(task_name="notifications.send_batch").count() == 1


# --- Outbound webhooks: one breaker per endpoint ----------------------------------------


def test_a_failing_endpoint_opens_its_own_breaker_and_another_keeps_sending(kinds, settings):
    settings.NOTIFICATIONS_WEBHOOK_FAILURE_STREAK = 100  # this test is about the breaker
    opens_after = settings.NOTIFICATIONS_WEBHOOK_PROVIDER["breaker"]["failures"]
    recipient = make_recipient(email="", phone="")
    with receiver_fake.serve() as down, receiver_fake.serve() as up:
        failing = WebhookEndpoint.objects.create(
            recipient=recipient, url=f"{down.url}/hook", secret="a"
        )
        healthy = WebhookEndpoint.objects.create(
            recipient=recipient, url=f"{up.url}/hook", secret="b"
        )
        for endpoint in (failing, healthy):
            forget_provider(endpoint.provider_name)
        down.fail_next(500, times=opens_after + 5)
        sent = services.send("booking_reminder", recipient.ref, CONTEXT)
        to = {m.webhook_endpoint_id: m for m in sent}

        for _ in range(opens_after):
            with pytest.raises(Exception, match="500"):
                services.deliver(to[failing.id].id)
        assert down.count("webhook") == opens_after
        with pytest.raises(ProviderDeferred, match=f"provider webhook-{failing.id}"):
            services.deliver(to[failing.id].id)
        assert down.count("webhook") == opens_after  # the open breaker called nobody
        assert Message.objects.get(id=to[failing.id].id).status == MessageStatus.QUEUED

        assert services.deliver(to[healthy.id].id)["status"] == "sent"
        assert len(up.received("/hook")) == 1
    assert Message.objects.get(id=to[healthy.id].id).status == MessageStatus.DELIVERED
    # Attempts are not failed messages: neither endpoint is on a streak.
    assert set(WebhookEndpoint.objects.values_list("failure_streak", "active")) == {(0, True)}

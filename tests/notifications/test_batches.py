"""A batch fans out on a real worker in chunk jobs of at most 100 recipients, and every
recipient gets exactly one message per channel, also when a chunk runs again."""

from __future__ import annotations

import pytest
from django.db import transaction

import queueing
from notifications import batches
from notifications.models import Batch, Message, MessageStatus, PushSubscription
from queueing import Job, JobStatus
from tests.harness import wait_until
from tests.notifications.conftest import QUEUE, make_recipient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

RECIPIENTS = 105


def test_a_batch_sends_each_recipient_exactly_one_message(worker, fakes, kinds):
    refs = []
    for number in range(RECIPIENTS):
        recipient = make_recipient(f"C{number:04d}", email="", phone="")
        subscription = fakes["push"].subscribe(f"browser-{number}")
        PushSubscription.objects.create(
            recipient=recipient,
            endpoint=subscription["endpoint"],
            p256dh=subscription["keys"]["p256dh"],
            auth=subscription["keys"]["auth"],
        )
        refs.append(recipient.ref)
    context = {"booking": "ALL", "date": "Wed 2 Dec 2026", "location": "your street"}
    with transaction.atomic():
        job = queueing.enqueue(
            "notifications.send_batch",
            kwargs={
                "kind": "booking_reminder",
                "recipients": [*refs, refs[0]],  # named twice: still one message
                "context": context,
                "channel": "push",
            },
            queue=QUEUE,
        )
    wait_until(
        lambda: Message.objects.filter(status=MessageStatus.DELIVERED).count() == RECIPIENTS,
        timeout=60,
        message=lambda: f"delivered: {Message.objects.filter(status='delivered').count()}",
    )
    batch = Batch.objects.get()
    chunks = Job.objects.filter(task_name="notifications.send_batch_chunk")
    assert sorted(len(j.kwargs["refs"]) for j in chunks) == [5, 100]
    assert all(j.status == JobStatus.SUCCEEDED for j in chunks)
    assert Job.objects.get(id=job.id).status == JobStatus.SUCCEEDED

    # A chunk that runs again (a retry after a crash) queues nothing new.
    again = batches.send_chunk(batch.id, refs[:100])
    assert (again["messages"], again["existing"]) == (0, 100)
    assert Message.objects.count() == RECIPIENTS
    pushed = [r.path for r in fakes["push"].requests if r.status == 201]
    assert len(pushed) == RECIPIENTS == len(set(pushed))
    assert {p["body"] for p in fakes["push"].payloads()} == {"your street (booking ALL)"}

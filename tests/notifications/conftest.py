"""Fixtures of the notification tests: the seed kinds and templates, recipients, the
provider fakes over HTTP, and a worker of our own whose settings point at them.

The session worker (tests/conftest.py) knows nothing of these fakes, so the notification
jobs of these tests go to the ``isolated`` queue (NOTIFICATIONS_QUEUE), which only our
worker consumes; it also takes ``external-api``, where datasync processes the providers'
callbacks, so the package runs on its own as well as in the whole suite. The worker and
the fakes live as long as this package's tests (package scope): other tests' own
workers use ``isolated`` too.
"""

from __future__ import annotations

import pytest

from devstack.fakes import sendgrid as sendgrid_fake
from devstack.fakes import twilio as twilio_fake
from devstack.fakes import webhooks as receiver_fake
from devstack.fakes import webpush as webpush_fake
from notifications import seed
from notifications.management.commands.generate_vapid_keys import generate
from notifications.models import MessageKind, Recipient, RecipientKind, Template
from tests.factories import forget_provider
from tests.harness import delete_keys, start_worker

QUEUE = "isolated"
BOUNCING = "bounce@example.com"
VAPID_PRIVATE, VAPID_PUBLIC = generate()


@pytest.fixture(scope="package")
def fakes(live_server):
    """Twilio, SendGrid (its events posted to our live server), a push service and a
    customer's webhook receiver, each on a free port."""
    with (
        twilio_fake.serve() as twilio,
        sendgrid_fake.serve(
            event_webhook_url=f"{live_server.url}/webhooks/sendgrid/", bounces=[BOUNCING]
        ) as sendgrid,
        webpush_fake.serve() as push,
        receiver_fake.serve() as receiver,
    ):
        yield {"twilio": twilio, "sendgrid": sendgrid, "push": push, "receiver": receiver}


@pytest.fixture(scope="package")
def notifications_worker(fakes, live_server, relay):
    worker = start_worker(
        queues=[QUEUE, "external-api"],
        concurrency=4,
        env={
            "NOTIFICATIONS_QUEUE": QUEUE,
            "PUBLIC_URL": live_server.url,
            "TWILIO_API_BASE": fakes["twilio"].url,
            "SENDGRID_API_BASE": fakes["sendgrid"].url,
            "VAPID_PRIVATE_KEY": VAPID_PRIVATE,
        },
    )
    yield worker
    worker.stop()


@pytest.fixture
def worker(notifications_worker, fakes, settings, live_server):
    """Our worker, fresh fakes and provider state, and this process's settings matching
    the worker's."""
    for fake in fakes.values():
        fake.reset()
    for name in ("twilio", "sendgrid", "webpush"):
        forget_provider(name)
    delete_keys("taskyard:rate:notifications.*", "taskyard:*provider*webhook-*")
    settings.NOTIFICATIONS_QUEUE = QUEUE
    settings.NOTIFICATIONS_PUBLIC_URL = live_server.url
    return notifications_worker


@pytest.fixture
def kinds(db):
    """The seed kinds and templates (a transactional test's flush removed the
    migration's rows)."""
    seed.seed(MessageKind, Template)
    return {kind.name: kind for kind in MessageKind.objects.all()}


def make_recipient(ref: str = "DEMO-C0001", **fields) -> Recipient:
    values = {
        "kind": RecipientKind.CUSTOMER,
        "name": "Anna de Vries",
        "email": "anna@example.com",
        "phone": "+31612345678",
        "locale": "en",
    }
    values.update(fields)
    return Recipient.objects.create(ref=ref, **values)

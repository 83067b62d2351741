"""Inbound webhooks: verified per provider scheme, stored, de-duplicated, processed by a
real worker through the app's handler; refused deliveries leave nothing behind."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import stripe
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.test import Client

from datasync.models import WebhookEvent, WebhookStatus
from datasync.signatures import sign_hmac
from devstack.fakes import sendgrid as sendgrid_fake
from devstack.fakes import stripe as stripe_fake
from devstack.fakes import twilio as twilio_fake
from queueing.models import Job
from tests.harness import delete_keys, wait_until
from tests.sideeffects.models import SideEffect

STRIPE_SECRET = settings.WEBHOOK_SOURCES["stripe"]["secret"]


def stripe_event(event_type: str = "payment_intent.created", intent: str | None = None) -> dict:
    return stripe_fake.build_event(
        event_type, {"id": intent or f"pi_{uuid.uuid4().hex[:12]}", "object": "payment_intent"}
    )


def post_stripe(client: Client, event: dict, *, secret: str = STRIPE_SECRET, timestamp=None):
    body = stripe_fake.event_payload(event)
    return client.post(
        "/webhooks/stripe/",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_fake.sign_payload(body, secret, timestamp),
    )


def hmac_headers(secret: str, body: bytes) -> dict[str, str]:
    """sign_hmac's headers as Django test client keyword arguments."""
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign_hmac(secret, body).items()}


def processed(event_id: int, timeout: float = 20) -> WebhookEvent:
    return wait_until(
        lambda: (
            WebhookEvent.objects.filter(id=event_id).exclude(status=WebhookStatus.RECEIVED).first()
        ),
        timeout=timeout,
        message=f"webhook event {event_id} processed",
    )


@pytest.fixture(autouse=True)
def fresh_dedupe_window():
    delete_keys("taskyard:webhook:seen:*")


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_signed_event_is_accepted_stored_and_processed_once(celery_worker):
    event = stripe_event()
    response = post_stripe(Client(), event)
    assert response.status_code == 202 and response.json() == {"status": "accepted"}
    stored = WebhookEvent.objects.get()
    assert (stored.source, stored.event_id, stored.event_type) == (
        "stripe",
        event["id"],
        "payment_intent.created",
    )
    assert "Stripe-Signature" in stored.headers
    job = Job.objects.get(id=stored.job_id)
    assert (job.task_name, job.queue) == ("datasync.process_webhook", "external-api")

    done = processed(stored.id)
    assert done.status == WebhookStatus.PROCESSED
    intent = event["data"]["object"]["id"]
    assert SideEffect.objects.filter(key=f"payment:{intent}").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_event_twice_and_the_same_payload_again_are_one_event():
    event = stripe_event()
    client = Client()
    first, again = post_stripe(client, event), post_stripe(client, event)
    assert first.status_code == again.status_code == 202
    assert again["X-Taskyard-Duplicate"] == "1"
    # The provider re-sends the event later with other bytes (say, a new field): same id,
    # still one event.
    event["request"] = {"id": "req_retry"}
    retried = post_stripe(client, event, timestamp=int(time.time()) - 5)
    assert retried.status_code == 202
    assert WebhookEvent.objects.count() == 1
    assert Job.objects.filter(task_name="datasync.process_webhook").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_identical_payload_without_an_id_is_deduplicated_for_five_minutes():
    body = json.dumps({"type": "record.updated", "record": "rec1"}).encode()
    secret = settings.WEBHOOK_SOURCES["airtable"]["secret"]
    client = Client()
    for _ in range(3):
        response = client.post(
            "/webhooks/airtable/",
            body,
            content_type="application/json",
            **{
                f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign_hmac(secret, body).items()
            },
        )
        assert response.status_code == 202
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("secret", "timestamp", "status", "code"),
    [
        ("whsec_forged", None, 401, "bad_signature"),
        (STRIPE_SECRET, int(time.time()) - 3600, 400, "stale_timestamp"),
    ],
)
def test_a_forged_or_replayed_delivery_is_refused_and_nothing_is_stored(
    secret, timestamp, status, code
):
    response = post_stripe(Client(), stripe_event(), secret=secret, timestamp=timestamp)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not WebhookEvent.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_unsigned_oversized_unknown_and_wrong_method_are_refused():
    client = Client()
    assert (
        client.post("/webhooks/stripe/", b"{}", content_type="application/json").status_code == 401
    )
    big = b"x" * (settings.WEBHOOK_MAX_BYTES + 1)
    assert client.post("/webhooks/stripe/", big, content_type="application/json").status_code == 413
    assert (
        client.post("/webhooks/nobody/", b"{}", content_type="application/json").status_code == 404
    )
    assert client.get("/webhooks/stripe/").status_code == 405
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_event_without_a_handler_is_kept_as_unhandled(celery_worker):
    response = post_stripe(Client(), stripe_event("customer.created"))
    assert response.status_code == 202
    done = processed(WebhookEvent.objects.get().id)
    assert done.status == WebhookStatus.UNHANDLED and done.processed_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_failing_handler_retries_and_ends_in_a_dead_letter(celery_worker, settings):
    body = json.dumps({"id": "evt_broken", "type": "record.broken"}).encode()
    secret = settings.WEBHOOK_SOURCES["airtable"]["secret"]
    response = Client().post(
        "/webhooks/airtable/",
        body,
        content_type="application/json",
        **hmac_headers(secret, body),
    )
    assert response.status_code == 202
    event = WebhookEvent.objects.get()
    assert processed(event.id).status == WebhookStatus.FAILED
    # The job follows the retry policy: its first attempt failed and it will retry.
    first = wait_until(
        lambda: Job.objects.get(id=event.job_id).attempt_rows.order_by("number").first(),
        timeout=10,
        message="the first attempt recorded",
    )
    assert first.outcome == "retrying" and first.error_class.endswith("RuntimeError")
    assert Job.objects.get(id=event.job_id).max_attempts == 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_stripe_fake_delivers_a_signed_event_end_to_end(live_server, celery_worker):
    with stripe_fake.serve(webhook_url=f"{live_server.url}/webhooks/stripe/") as fake:
        client = stripe.StripeClient(
            "sk_test_taskyard", base_addresses={"api": fake.url}, max_network_retries=0
        )
        params = {"amount": 1200, "currency": "eur", "payment_method": "pm_card_visa"}
        intent = client.v1.payment_intents.create(params={**params, "confirm": True})
        event = wait_until(
            lambda: WebhookEvent.objects.filter(event_type="payment_intent.created").first(),
            timeout=10,
            message="the fake's signed event stored",
        )
    assert processed(event.id).status == WebhookStatus.PROCESSED
    assert SideEffect.objects.filter(key=f"payment:{intent.id}").count() == 1


@pytest.mark.django_db(transaction=True)
def test_twilio_status_callbacks_verify_against_the_url_they_were_sent_to(live_server):
    token = settings.WEBHOOK_SOURCES["twilio"]["secret"]
    url = f"{live_server.url}/webhooks/twilio/"
    params = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+15005550006"}
    assert twilio_fake.send_status_callback(url, params, token).status == 202
    assert twilio_fake.send_status_callback(url, params, "wrong-token").status == 401
    assert twilio_fake.send_status_callback(url + "?x=1", params, token).status == 202
    event = WebhookEvent.objects.get()
    assert (event.event_id, event.event_type) == ("SM123:delivered", "message.delivered")


@pytest.mark.django_db(transaction=True)
def test_sendgrid_signed_event_webhook(live_server):
    url = f"{live_server.url}/webhooks/sendgrid/"
    events = [{"event": "delivered", "sg_event_id": "e1", "email": "a@example.com"}]
    assert sendgrid_fake.send_events(url, events).status == 202
    forged = sendgrid_fake.send_events(
        url, events, private_key=ec.generate_private_key(ec.SECP256R1())
    )
    assert forged.status == 401
    event = WebhookEvent.objects.get()
    assert event.event_type == "delivered" and event.payload == events

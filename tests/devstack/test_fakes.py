"""The provider fakes (devstack/fakes/), each driven through the real SDK the project uses:
stripe, twilio, django-anymail's SendGrid backend, pyairtable, httpx.

Every fake runs in this process on a free loopback port. Signatures are checked with the
provider SDK's own verifier, never with the fake's code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import requests
import stripe
from anymail.exceptions import AnymailRequestsAPIError, AnymailWebhookValidationFailure
from anymail.signals import tracking
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.core.mail import EmailMessage, send_mail
from django.test import RequestFactory, override_settings
from pyairtable import Api
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from devstack.fakes import airtable, osrm, sendgrid, twilio, webhooks
from devstack.fakes import stripe as stripe_fake
from tests.harness import wait_until

BASE_DIR = Path(__file__).resolve().parent.parent.parent
WEBHOOK_SECRET = "whsec_test_secret"
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-test-auth-token"
# Shorter than the fakes' hang, long enough for a loaded CI machine to answer a request.
CLIENT_TIMEOUT = 0.5


def stripe_client(url: str, *, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_fake",
        base_addresses={"api": url},
        http_client=stripe.RequestsClient(timeout=CLIENT_TIMEOUT),
        max_network_retries=retries,
    )


# -- Stripe -------------------------------------------------------------------------------


def test_stripe_customer_and_confirmed_payment_intent():
    with stripe_fake.serve() as fake:
        client = stripe_client(fake.url)
        customer = client.v1.customers.create(
            params={"email": "ops@example.com", "name": "Depot North", "metadata": {"site": "7"}}
        )
        assert customer.id.startswith("cus_")
        assert customer.metadata["site"] == "7"
        assert client.v1.customers.retrieve(customer.id).email == "ops@example.com"

        intent = client.v1.payment_intents.create(
            params={
                "amount": 4200,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        assert intent.id.startswith("pi_")
        assert (intent.status, intent.amount_received) == ("succeeded", 4200)
        assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"

        with pytest.raises(stripe.InvalidRequestError) as missing:
            client.v1.customers.retrieve("cus_nope")
        assert missing.value.http_status == 404
        assert missing.value.code == "resource_missing"

        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(
                params={
                    "amount": 100,
                    "currency": "eur",
                    "payment_method": "pm_card_chargeDeclined",
                    "confirm": True,
                }
            )
        assert (declined.value.http_status, declined.value.code) == (402, "card_declined")

        assert fake.counts == {
            "customers.create": 1,
            "customers.retrieve": 2,
            "payment_intents.create": 2,
            "payment_intents.retrieve": 1,
        }
        assert [e["type"] for e in fake.events][:3] == [
            "customer.created",
            "payment_intent.created",
            "payment_intent.succeeded",
        ]


def test_stripe_idempotency_key_replays_and_refuses_other_parameters():
    with stripe_fake.serve() as fake:
        client = stripe_client(fake.url)
        params = {
            "amount": 990,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
        first = client.v1.payment_intents.create(
            params=params, options={"idempotency_key": "inv-17"}
        )
        again = client.v1.payment_intents.create(
            params=params, options={"idempotency_key": "inv-17"}
        )
        assert again.id == first.id
        assert again.last_response.headers["Idempotent-Replayed"] == "true"
        assert len(fake.payment_intents) == 1

        with pytest.raises(stripe.IdempotencyError) as refused:
            client.v1.payment_intents.create(
                params={**params, "amount": 991}, options={"idempotency_key": "inv-17"}
            )
        assert refused.value.http_status == 400
        assert "inv-17" in refused.value.user_message


def test_stripe_sdk_retry_after_a_5xx_reuses_its_idempotency_key():
    with stripe_fake.serve() as fake:
        fake.fail_next(500)
        customer = stripe_client(fake.url, retries=1).v1.customers.create(params={"name": "x"})
        keys = [r.header("Idempotency-Key") for r in fake.requests]
        assert [r.status for r in fake.requests] == [500, 200]
        assert keys[0] and keys[0] == keys[1]
        assert list(fake.customers) == [customer.id]


def test_stripe_429_5xx_and_timeout_surface_as_sdk_errors():
    with stripe_fake.serve() as fake:
        client = stripe_client(fake.url)
        fake.fail_next(429, retry_after=2)
        with pytest.raises(stripe.RateLimitError) as limited:
            client.v1.customers.create(params={"name": "x"})
        assert limited.value.http_status == 429
        assert limited.value.headers["Retry-After"] == "2"
        assert limited.value.error.code == "rate_limit"  # RateLimitError.code stays None

        fake.fail_next(503)
        with pytest.raises(stripe.APIError) as failed:
            client.v1.customers.create(params={"name": "x"})
        assert failed.value.http_status == 503

        fake.hang_next()
        with pytest.raises(stripe.APIConnectionError):
            client.v1.customers.create(params={"name": "x"})

        # Injected faults save nothing under an idempotency key, as at Stripe.
        fake.fail_next(503)
        with pytest.raises(stripe.APIError):
            client.v1.customers.create(params={"name": "y"}, options={"idempotency_key": "k"})
        created = client.v1.customers.create(params={"name": "y"}, options={"idempotency_key": "k"})
        assert created.name == "y"
        assert not fake.faults


def test_stripe_webhook_events_verify_with_the_sdk():
    with webhooks.serve() as receiver:
        url = f"{receiver.url}/webhooks/stripe/"
        with stripe_fake.serve(webhook_url=url, webhook_secret=WEBHOOK_SECRET) as fake:
            stripe_client(fake.url).v1.customers.create(params={"email": "a@example.com"})
            wait_until(lambda: receiver.received("/webhooks/stripe/"), timeout=5, interval=0.01)
        delivery = receiver.received()[0]
        header = delivery.header("Stripe-Signature")
        event = stripe.Webhook.construct_event(delivery.body, header, WEBHOOK_SECRET)
        assert event.type == "customer.created"
        assert event.data.object.email == "a@example.com"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(delivery.body, header, "whsec_other")
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(delivery.body + b" ", header, WEBHOOK_SECRET)

    # The helper alone, for tests of our own webhook endpoint.
    payload = stripe_fake.event_payload(stripe_fake.build_event("invoice.paid", {"id": "in_1"}))
    signed = stripe_fake.sign_payload(payload, WEBHOOK_SECRET)
    assert stripe.Webhook.construct_event(payload, signed, WEBHOOK_SECRET).type == "invoice.paid"


# -- Twilio -------------------------------------------------------------------------------


def twilio_client(url: str) -> TwilioClient:
    http_client = twilio.redirecting_http_client(url, timeout=CLIENT_TIMEOUT)
    return TwilioClient(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)


def test_twilio_message_and_signed_status_callbacks():
    with webhooks.serve() as receiver, twilio.serve(auth_token=AUTH_TOKEN) as fake:
        callback = f"{receiver.url}/webhooks/twilio/"
        client = twilio_client(fake.url)
        message = client.messages.create(
            to="+447700900123", from_="+447700900999", body="Bin day", status_callback=callback
        )
        assert message.sid.startswith("SM")
        assert len(message.sid) == 34
        assert message.status == "queued"
        assert message.account_sid == ACCOUNT_SID

        wait_until(lambda: len(receiver.received()) == 2, timeout=5, interval=0.01)
        validator = RequestValidator(AUTH_TOKEN)
        statuses = []
        for request in receiver.received():
            params = {name: values[0] for name, values in request.form().items()}
            assert validator.validate(callback, params, request.header("X-Twilio-Signature"))
            assert not validator.validate(
                callback, params | {"To": "+1"}, request.header("X-Twilio-Signature")
            )
            assert params["MessageSid"] == message.sid
            statuses.append(params["MessageStatus"])
        assert statuses == ["sent", "delivered"]
        assert client.messages(message.sid).fetch().status == "delivered"
        assert fake.counts == {"messages.create": 1, "messages.fetch": 1}


def test_twilio_errors_surface_as_twilio_rest_exceptions():
    with twilio.serve(auth_token=AUTH_TOKEN) as fake:
        client = twilio_client(fake.url)
        send = {"to": "+447700900123", "from_": "+447700900999", "body": "hi"}

        fake.fail_next(429, retry_after=5)
        with pytest.raises(TwilioRestException) as limited:
            client.messages.create(**send)
        assert (limited.value.status, limited.value.code) == (429, 20429)
        # TwilioRestException has no headers; the client kept the response.
        assert client.http_client.last_response.headers["Retry-After"] == "5"

        fake.fail_next(503)
        with pytest.raises(TwilioRestException) as failed:
            client.messages.create(**send)
        assert failed.value.status == 503

        with pytest.raises(TwilioRestException) as invalid:
            client.messages.create(**{**send, "to": twilio.INVALID_NUMBER})
        assert (invalid.value.status, invalid.value.code) == (400, 21211)

        wrong = TwilioClient(
            ACCOUNT_SID, "wrong", http_client=twilio.redirecting_http_client(fake.url)
        )
        with pytest.raises(TwilioRestException) as unauthorized:
            wrong.messages.create(**send)
        assert unauthorized.value.status == 401

        fake.hang_next()
        with pytest.raises(requests.Timeout):
            client.messages.create(**send)


# -- SendGrid through django-anymail ------------------------------------------------------


def anymail_settings(url: str, **extra: object) -> override_settings:
    return override_settings(
        EMAIL_BACKEND="anymail.backends.sendgrid.EmailBackend",
        ANYMAIL={
            "SENDGRID_API_KEY": "SG.fake-key",
            "SENDGRID_API_URL": f"{url}/v3/",
            "REQUESTS_TIMEOUT": CLIENT_TIMEOUT,
            **extra,
        },
    )


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_sendgrid_mail_send_through_anymail():
    with sendgrid.serve() as fake, anymail_settings(fake.url):
        sent = send_mail(
            "Collection moved", "Tuesday instead.", "ops@example.com", ["a@example.com"]
        )
        assert sent == 1
        message = EmailMessage("Invoice", "Attached.", "billing@example.com", ["b@example.com"])
        message.send()
        assert message.anymail_status.status == {"queued"}

        assert [m["payload"]["subject"] for m in fake.messages] == ["Collection moved", "Invoice"]
        request = fake.requests[-1]
        assert request.header("Authorization") == "Bearer SG.fake-key"
        assert fake.counts == {"mail.send": 2}


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_sendgrid_event_webhook_verifies_with_anymail():
    received = []

    def on_tracking(sender, event, esp_name, **kwargs):
        received.append(event)

    with webhooks.serve() as receiver:
        url = f"{receiver.url}/webhooks/sendgrid/"
        with (
            sendgrid.serve(event_webhook_url=url) as fake,
            anymail_settings(
                fake.url, SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY=fake.verification_key
            ),
        ):
            message = EmailMessage("Hi", "Body", "ops@example.com", ["c@example.com"])
            message.send()
            wait_until(receiver.received, timeout=5, interval=0.01)
            delivery = receiver.received()[0]
            headers = {
                name: delivery.header(name)
                for name in (sendgrid.SIGNATURE_HEADER, sendgrid.TIMESTAMP_HEADER)
            }
            view = SendGridTrackingWebhookView.as_view()
            tracking.connect(on_tracking)
            try:
                response = view(
                    RequestFactory().post(
                        "/anymail/sendgrid/tracking/",
                        data=delivery.body,
                        content_type="application/json",
                        headers=headers,
                    )
                )
                forged = RequestFactory().post(
                    "/anymail/sendgrid/tracking/",
                    data=delivery.body.replace(b"delivered", b"bounce"),
                    content_type="application/json",
                    headers=headers,
                )
                # A SuspiciousOperation: Django's handler turns it into a 400.
                with pytest.raises(AnymailWebhookValidationFailure):
                    view(forged)
            finally:
                tracking.disconnect(on_tracking)
    assert response.status_code == 200
    assert [e.event_type for e in received] == ["queued", "delivered"]
    assert {e.message_id for e in received} == {message.anymail_status.message_id}
    assert sendgrid.SendGridFake().verification_key == sendgrid.DEV_VERIFICATION_KEY


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_sendgrid_errors_surface_as_anymail_errors():
    with sendgrid.serve() as fake, anymail_settings(fake.url):
        fake.fail_next(429, retry_after=7)
        with pytest.raises(AnymailRequestsAPIError) as limited:
            send_mail("s", "b", "ops@example.com", ["a@example.com"])
        assert limited.value.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "7"

        fake.fail_next(502)
        with pytest.raises(AnymailRequestsAPIError) as failed:
            send_mail("s", "b", "ops@example.com", ["a@example.com"])
        assert failed.value.status_code == 502

        fake.hang_next()
        with pytest.raises(requests.Timeout):  # anymail's error is also the requests one
            send_mail("s", "b", "ops@example.com", ["a@example.com"])

        with pytest.raises(AnymailRequestsAPIError) as invalid:
            EmailMessage("", "b", "ops@example.com", ["a@example.com"]).send()
        assert invalid.value.status_code == 400
        assert "subject" in invalid.value.response.json()["errors"][0]["field"]
        assert not fake.messages


# -- Airtable through pyairtable ----------------------------------------------------------


def airtable_api(url: str, **options: object) -> Api:
    options.setdefault("retry_strategy", None)
    return Api(
        "patFakeToken", endpoint_url=url, timeout=(CLIENT_TIMEOUT, CLIENT_TIMEOUT), **options
    )


def test_airtable_records_create_list_update():
    with airtable.serve(rate_limit=1000) as fake:
        table = airtable_api(fake.url).table("appDEPOT", "Pickups")
        first = table.create({"Site": "North", "Bins": 3})
        assert first["id"].startswith("rec")
        assert first["createdTime"].endswith("Z")
        table.batch_create([{"Site": f"S{i}", "Bins": i} for i in range(6)])

        records = table.all(page_size=3)
        assert [r["fields"]["Site"] for r in records] == ["North", *(f"S{i}" for i in range(6))]
        assert fake.count("records.list") == 3  # 7 records, pages of 3

        updated = table.update(first["id"], {"Bins": 5, "Note": "gate code"})
        assert updated["fields"] == {"Site": "North", "Bins": 5, "Note": "gate code"}
        assert table.get(first["id"])["fields"]["Note"] == "gate code"
        assert [r["fields"] for r in table.all(fields=["Site"], max_records=2)] == [
            {"Site": "North"},
            {"Site": "S0"},
        ]
        with pytest.raises(requests.HTTPError) as missing:
            table.get("recNOPE")
        assert missing.value.response.status_code == 404


def test_airtable_limits_five_requests_per_second_per_base():
    with airtable.serve(rate_limit_penalty=0.3) as fake:
        api = airtable_api(fake.url)
        table = api.table("appDEPOT", "Pickups")
        for _ in range(5):
            table.all()
        with pytest.raises(requests.HTTPError) as limited:
            table.all()
        assert limited.value.response.status_code == 429
        assert limited.value.response.json()["errors"][0]["error"] == "RATE_LIMIT_REACHED"
        # Per base: another base is not limited.
        assert api.table("appOTHER", "Pickups").all() == []
        # pyairtable's default retry strategy (backoff on 429) gets through the penalty.
        assert airtable_api(fake.url, retry_strategy=True).table("appDEPOT", "Pickups").all() == []
        assert [r.status for r in fake.requests].count(429) >= 2


def test_airtable_injected_faults():
    with airtable.serve() as fake:
        table = airtable_api(fake.url).table("appDEPOT", "Pickups")
        fake.fail_next(503)
        with pytest.raises(requests.HTTPError) as failed:
            table.all()
        assert failed.value.response.status_code == 503
        fake.hang_next()
        with pytest.raises(requests.Timeout):
            table.all()
        assert table.all() == []


# -- OSRM matrix through httpx ------------------------------------------------------------


def test_osrm_table_from_great_circle_distances():
    with osrm.serve() as fake:
        # Two points one degree of latitude apart, and a third one a degree east at 0,0.
        coordinates = "0,0;0,1;1,0"
        response = httpx.get(
            f"{fake.url}/table/v1/driving/{coordinates}",
            params={"annotations": "duration,distance", "sources": "0;1"},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["code"] == "Ok"
        one_degree = 111_226.3  # metres on OSRM's earth radius
        assert body["distances"][0] == [0.0, one_degree, one_degree]
        assert body["durations"][0] == [0.0, 11_122.6, 11_122.6]  # at 10 m/s
        assert len(body["durations"]) == 2  # sources 0 and 1
        assert body["destinations"][2]["location"] == [1.0, 0.0]

        durations_only = httpx.get(f"{fake.url}/table/v1/driving/{coordinates}").json()
        assert "distances" not in durations_only  # OSRM's default annotations=duration
        bad = httpx.get(f"{fake.url}/table/v1/driving/0,0;200,0")
        assert (bad.status_code, bad.json()["code"]) == (400, "InvalidValue")


def test_osrm_faults_through_httpx():
    with osrm.serve() as fake, httpx.Client(base_url=fake.url, timeout=CLIENT_TIMEOUT) as client:
        path = "/table/v1/driving/0,0;0,1"
        fake.fail_next(429, retry_after=3)
        limited = client.get(path)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
        with pytest.raises(httpx.HTTPStatusError):
            limited.raise_for_status()
        fake.fail_next(500, times=2)
        assert [client.get(path).status_code for _ in range(3)] == [500, 500, 200]

        fake.delay_next(0.2)
        started = time.monotonic()
        assert client.get(path).status_code == 200
        assert time.monotonic() - started >= 0.2

        fake.hang_next()
        with pytest.raises(httpx.ReadTimeout):
            client.get(path)
        assert fake.count("table") == 6


def test_faults_and_record_steered_over_http():
    with osrm.serve() as fake, httpx.Client(base_url=fake.url, timeout=CLIENT_TIMEOUT) as client:
        path = "/table/v1/driving/0,0;0,1"
        added = client.post("/_fake/faults", json={"status": 503, "times": 2, "retry_after": 1})
        assert added.status_code == 201
        assert [client.get(path).status_code for _ in range(3)] == [503, 503, 200]
        recorded = client.get("/_fake/requests").json()
        assert [(r["route"], r["status"]) for r in recorded] == [("table", 503)] * 2 + [
            ("table", 200)
        ]
        assert client.get("/_fake/counts").json() == {"table": 3}

        assert client.post("/_fake/faults", json={"hang": True}).status_code == 201
        with pytest.raises(httpx.ReadTimeout):
            client.get(path)
        assert client.post("/_fake/faults", json={"latency": 0.05}).status_code == 200
        assert fake.latency == 0.05
        assert client.post("/_fake/faults", json={"times": 1}).status_code == 400

        assert client.post("/_fake/reset").status_code == 200
        assert client.get("/_fake/requests").json() == []
        assert (fake.latency, fake.faults) == (0.0, [])


# -- python -m devstack.fakes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_devstack_fakes_serves_every_fake_until_sigterm():
    ports = {
        name: free_port()
        for name in ("stripe", "twilio", "sendgrid", "airtable", "osrm", "restapi")
    }
    env = dict(os.environ, **{f"FAKE_{name.upper()}_PORT": str(p) for name, p in ports.items()})
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.fakes"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def all_answer() -> bool:
            try:
                return all(
                    httpx.get(f"http://127.0.0.1:{p}/_fake", timeout=1).json()["name"] == name
                    for name, p in ports.items()
                )
            except httpx.HTTPError:
                return False

        wait_until(all_answer, timeout=10, interval=0.05)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    for name, port in ports.items():
        assert f"{name:9} http://127.0.0.1:{port}" in stdout
    assert json.dumps(sendgrid.DEV_VERIFICATION_KEY).strip('"') in stdout

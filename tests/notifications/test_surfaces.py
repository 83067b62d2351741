"""The work without a worker: templates checked at save and versioned in the admin, the
send entry point's refusals and de-duplication, preferences and the unsubscribe link, the
API's contract and roles, the history, and a failing webhook endpoint disabled with an
alert."""

from __future__ import annotations

import base64
import datetime as dt
import json
import zoneinfo

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client

from devstack.fakes import sendgrid as sendgrid_fake
from devstack.fakes import twilio as twilio_fake
from devstack.fakes import webhooks as receiver_fake
from devstack.fakes import webpush as webpush_fake
from notifications import services
from notifications.checks import check_public_url
from notifications.models import (
    Message,
    MessageStatus,
    Preference,
    PushSubscription,
    Recipient,
    Suppression,
    SuppressionReason,
    Template,
    WebhookEndpoint,
)
from queueing import Job
from tests.api.conftest import client_for, make_user
from tests.factories import forget_provider
from tests.harness import delete_keys
from tests.notifications.conftest import VAPID_PRIVATE, VAPID_PUBLIC, make_recipient

pytestmark = pytest.mark.django_db

CONTEXT = {"booking": "B-1", "date": "Tue 1 Dec 2026 07:30", "location": "Oudegracht 1"}
SEND_URL = "/api/v1/queue/notifications"
# A browser's keys: an uncompressed P-256 point (65 bytes) and a 16-byte auth secret.
SAMPLE_P256DH = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).rstrip(b"=").decode()
SAMPLE_AUTH = base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=").decode()


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:rate:api:*")


def test_a_template_naming_a_variable_its_kind_lacks_is_refused_at_save(kinds):
    kind = kinds["payment_reminder"]
    with pytest.raises(ValidationError) as refused:
        Template.objects.create(
            kind=kind, channel="sms", locale="de", body="{{ invoice }} {{ iban }}"
        )
    assert "unknown variable(s) iban" in str(refused.value)
    with pytest.raises(ValidationError, match="include"):
        Template.objects.create(kind=kind, channel="sms", locale="de", body="{% include 'x' %}")
    assert not Template.objects.filter(locale="de").exists()


def test_the_admin_saves_a_change_as_a_new_version_and_previews_sample_data(kinds, admin_client):
    template = Template.objects.get(kind__name="booking_reminder", channel="sms", locale="en")
    page = admin_client.get(f"/admin/notifications/template/{template.id}/change/")
    assert "Taskyard: pickup DEMO-B-0001 at Oudegracht 1, Utrecht" in page.content.decode()
    response = admin_client.post(
        f"/admin/notifications/template/{template.id}/change/",
        {
            "kind": template.kind_id,
            "channel": "sms",
            "locale": "en",
            "subject": "",
            "body": "Pickup {{ booking }} on {{ date }}.",
        },
    )
    assert response.status_code == 302
    versions = Template.objects.filter(kind=template.kind, channel="sms", locale="en")
    assert sorted(versions.values_list("version", "body")) == [
        (1, template.body),
        (2, "Pickup {{ booking }} on {{ date }}."),
    ]
    make_recipient()
    [message] = services.send("booking_reminder", "DEMO-C0001", CONTEXT, channel="sms")
    assert (message.template_version, message.body) == (2, "Pickup B-1 on Tue 1 Dec 2026 07:30.")


def test_send_refuses_what_cannot_work_and_writes_nothing(kinds):
    make_recipient()
    cases = [
        (("nope", "DEMO-C0001", CONTEXT), {}, "unknown message kind 'nope'"),
        (("booking_reminder", "DEMO-X", CONTEXT), {}, "unknown recipient 'DEMO-X'"),
        (("booking_reminder", "DEMO-C0001", {"booking": "B"}), {}, "lacks date, location"),
        (("payment_reminder", "DEMO-C0001", CONTEXT), {}, "lacks invoice"),
        (("booking_reminder", "DEMO-C0001", CONTEXT), {"channel": "fax"}, "unknown channel"),
    ]
    for args, options, error in cases:
        with pytest.raises(ValueError, match=error):
            services.send(*args, **options)
    assert not Message.objects.exists() and not Job.objects.exists()


def test_a_dedupe_key_gives_one_message_per_channel(kinds):
    make_recipient()
    first = services.send("booking_reminder", "DEMO-C0001", CONTEXT, dedupe_key="k1")
    again = services.send("booking_reminder", "DEMO-C0001", CONTEXT, dedupe_key="k1")
    assert sorted(m.channel for m in first) == ["email", "sms"]
    assert [m.id for m in first] == [m.id for m in again]
    assert Job.objects.filter(task_name__startswith="notifications.deliver_").count() == 2


def test_unsubscribe_link_works_without_login_and_stops_that_kinds_emails(kinds, client):
    recipient = make_recipient()
    [email] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")
    url = email.context["unsubscribe_url"]
    assert url in email.body
    path = url[url.index("/api/") :]
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 200
    assert not services.opted_in(recipient, "booking_reminder", "email")
    assert services.opted_in(recipient, "payment_reminder", "email")
    assert services.opted_in(recipient, "booking_reminder", "sms")
    [later] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="email")
    assert later.status == MessageStatus.SUPPRESSED
    assert client.post(path[:-3] + "xyz").status_code == 400


def test_opt_outs_per_kind_and_channel(kinds):
    recipient = make_recipient()
    Preference.objects.create(recipient=recipient, kind="*", channel="sms", opted_in=False)
    Preference.objects.create(recipient=recipient, kind="booking_reminder", channel="sms")
    assert services.opted_in(recipient, "booking_reminder", "sms")
    assert not services.opted_in(recipient, "payment_reminder", "sms")


def test_the_send_endpoint_takes_a_strict_contract_for_dispatchers(kinds):
    make_recipient()
    dispatcher = client_for(make_user("dispatcher"))
    good = {"kind": "booking_reminder", "recipients": ["DEMO-C0001"], "context": CONTEXT}
    response = dispatcher.post(SEND_URL, good, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["id"])
    assert (job.task_name, job.kwargs["recipients"]) == ("notifications.send_batch", ["DEMO-C0001"])

    assert client_for(make_user("customer")).post(SEND_URL, good, format="json").status_code == 403
    bad = [
        ({**good, "segment": "customers"}, "recipients"),
        ({"kind": "booking_reminder"}, "recipients"),
        ({**good, "kind": "nope"}, "kind"),
        ({**good, "channel": "fax"}, "channel"),
        ({**good, "send_at": "tomorrow"}, "send_at"),
        ({**good, "colour": "red"}, "colour"),
    ]
    for body, field in bad:
        response = dispatcher.post(SEND_URL, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.content.decode(), (field, response.content)
    assert Job.objects.count() == 1


def test_history_per_recipient(kinds):
    make_recipient()
    services.send("booking_reminder", "DEMO-C0001", CONTEXT)
    url = "/api/v1/queue/notifications/recipients/DEMO-C0001/messages"
    response = client_for(make_user("dispatcher")).get(url + "?page=1")
    assert response.status_code == 200
    assert sorted(m["channel"] for m in response.json()["results"]) == ["email", "sms"]
    assert client_for(make_user("driver")).get(url).status_code == 403
    missing = client_for(make_user("admin")).get(url.replace("DEMO-C0001", "DEMO-X"))
    assert missing.status_code == 404, missing.content


def test_a_failing_webhook_endpoint_is_disabled_after_its_streak_with_an_alert(kinds, settings):
    settings.NOTIFICATIONS_WEBHOOK_FAILURE_STREAK = 2
    settings.ALERT_EMAILS = ["ops@example.com"]
    recipient = make_recipient(email="", phone="")
    with receiver_fake.serve() as receiver:
        endpoint = WebhookEndpoint.objects.create(
            recipient=recipient, url=f"{receiver.url}/hook", secret="s"
        )
        forget_provider(endpoint.provider_name)
        receiver.fail_next(500, times=5)
        with transaction.atomic():
            messages = [
                services.send("booking_reminder", recipient.ref, CONTEXT)[0] for _ in range(2)
            ]
        for message in messages:
            # An attempt that is not the job's last does not count: the message may
            # still go out. Its last attempt fails it, and counts once.
            with pytest.raises(Exception, match="500"):
                services.deliver(message.id)
            assert WebhookEndpoint.objects.get().failure_streak == (message == messages[1])
            with pytest.raises(Exception, match="500"):
                services.deliver(message.id, last_attempt=True)
            assert Message.objects.get(id=message.id).status == MessageStatus.FAILED
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.failure_streak == 2
    assert "2 failed deliveries in a row" in endpoint.disabled_reason
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]
    assert services.send("booking_reminder", recipient.ref, CONTEXT) == []


def test_the_outbox_shows_what_the_local_fakes_received(kinds, settings, admin_client):
    recipient = make_recipient()
    with twilio_fake.serve() as twilio, sendgrid_fake.serve() as sendgrid:
        settings.TASKYARD_PROVIDERS = {
            **settings.TASKYARD_PROVIDERS,
            "twilio": {**settings.TASKYARD_PROVIDERS["twilio"], "base_url": twilio.url},
            "sendgrid": {**settings.TASKYARD_PROVIDERS["sendgrid"], "base_url": sendgrid.url},
        }
        forget_provider("twilio")
        forget_provider("sendgrid")
        for message in services.send("booking_reminder", recipient.ref, CONTEXT):
            assert services.deliver(message.id)["status"] == "sent"
        page = admin_client.get("/admin/notifications/message/outbox/").content.decode()
    assert "Taskyard: pickup B-1 at Oudegracht 1 on Tue 1 Dec 2026 07:30." in page
    assert "Reminder: pickup B-1 on Tue 1 Dec 2026 07:30" in page
    assert page.count("anna@example.com") == 1 and page.count("+31612345678") == 1


@pytest.mark.parametrize(
    ("local", "held_until"),
    [
        ("2026-12-01 23:30", "2026-12-02 07:00"),  # late evening: until tomorrow morning
        ("2026-12-02 06:59", "2026-12-02 07:00"),  # early morning: until 07:00 today
        ("2026-12-02 07:00", None),  # the end is not quiet any more
        ("2026-12-01 21:59", None),
    ],
)
def test_quiet_hours_across_midnight_in_the_recipients_zone(local, held_until):
    zone = zoneinfo.ZoneInfo("Europe/Amsterdam")
    recipient = Recipient(
        time_zone="Europe/Amsterdam", quiet_start=dt.time(22, 0), quiet_end=dt.time(7, 0)
    )
    now = dt.datetime.fromisoformat(local).replace(tzinfo=zone).astimezone(dt.UTC)
    expected = dt.datetime.fromisoformat(held_until).replace(tzinfo=zone) if held_until else None
    assert services.quiet_until(recipient, now) == expected


def with_provider(settings, name: str, url: str) -> None:
    settings.TASKYARD_PROVIDERS = {
        **settings.TASKYARD_PROVIDERS,
        name: {**settings.TASKYARD_PROVIDERS[name], "base_url": url},
    }
    forget_provider(name)


def test_a_number_twilio_calls_invalid_is_suppressed(kinds, settings):
    recipient = make_recipient(email="", phone=twilio_fake.INVALID_NUMBER)
    with twilio_fake.serve() as twilio:
        with_provider(settings, "twilio", twilio.url)
        [message] = services.send("booking_reminder", recipient.ref, CONTEXT)
        outcome = services.deliver(message.id)
        assert outcome["status"] == MessageStatus.FAILED
        assert Message.objects.get(id=message.id).error.startswith("Twilio 21211:")
        suppression = Suppression.objects.get(channel="sms")
        assert (suppression.address, suppression.reason) == (
            twilio_fake.INVALID_NUMBER,
            SuppressionReason.UNDELIVERABLE,
        )
        [again] = services.send("booking_reminder", recipient.ref, CONTEXT)
        assert (again.status, again.error) == (
            MessageStatus.SUPPRESSED,
            "the address is suppressed",
        )
        assert twilio.count("messages.create") == 1


def test_a_webhook_endpoint_refusing_a_message_counts_it_once(kinds):
    recipient = make_recipient(email="", phone="")
    with receiver_fake.serve() as receiver:
        endpoint = WebhookEndpoint.objects.create(
            recipient=recipient, url=f"{receiver.url}/hook", secret="s"
        )
        forget_provider(endpoint.provider_name)
        receiver.fail_next(400)
        [message] = services.send("booking_reminder", recipient.ref, CONTEXT)
        assert services.deliver(message.id)["status"] == MessageStatus.FAILED  # no retry
        assert services.deliver(message.id)["skipped"]
    assert Message.objects.get(id=message.id).error == "the endpoint answered 400"
    assert WebhookEndpoint.objects.get().failure_streak == 1


def test_a_push_subscription_the_browser_dropped_is_deactivated(kinds, settings):
    settings.VAPID_PRIVATE_KEY = VAPID_PRIVATE
    recipient = make_recipient(email="", phone="")
    with webpush_fake.serve() as push:
        gone, alive = push.subscribe("gone"), push.subscribe("alive")
        for browser in (gone, alive):
            PushSubscription.objects.create(
                recipient=recipient, endpoint=browser["endpoint"], **browser["keys"]
            )
        forget_provider("webpush")
        push.expire("gone")
        [first] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="push")
        assert services.deliver(first.id)["status"] == "sent"  # the live browser got it
        assert [p["title"] for p in push.payloads("alive")] == [first.subject]
        active = dict(PushSubscription.objects.values_list("endpoint", "active"))
        assert active == {gone["endpoint"]: False, alive["endpoint"]: True}

        push.expire("alive")
        [second] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="push")
        assert services.deliver(second.id)["status"] == MessageStatus.FAILED
    second.refresh_from_db()
    assert second.error == "every push subscription of the recipient has expired"
    assert not PushSubscription.objects.filter(active=True).exists()
    # No browser left: the next push is not even queued.
    [third] = services.send("booking_reminder", recipient.ref, CONTEXT, channel="push")
    assert third.status == MessageStatus.FAILED


PUSH_URL = "/api/v1/queue/notifications/push/subscriptions"


def test_a_browser_registers_its_push_subscription_and_reads_the_vapid_key(kinds, settings):
    settings.VAPID_PRIVATE_KEY, settings.VAPID_PUBLIC_KEY = VAPID_PRIVATE, ""
    customer = make_user("customer")
    recipient = make_recipient(user=customer)
    browser = client_for(customer)
    key = browser.get("/api/v1/queue/notifications/push/key")
    assert key.status_code == 200 and key.json() == {"public_key": VAPID_PUBLIC}

    body = {
        "endpoint": "https://push.example.com/send/abc",
        "expirationTime": None,
        "keys": {"p256dh": SAMPLE_P256DH, "auth": SAMPLE_AUTH},
    }
    created = browser.post(PUSH_URL, body, format="json")
    assert created.status_code == 201, created.content
    again = browser.post(PUSH_URL, body, format="json")
    assert again.status_code == 200
    [subscription] = PushSubscription.objects.all()
    assert (subscription.recipient, subscription.p256dh, subscription.auth) == (
        recipient,
        SAMPLE_P256DH,
        SAMPLE_AUTH,
    )

    bad = [
        ({**body, "endpoint": "not a url"}, "endpoint"),
        ({**body, "keys": {"p256dh": SAMPLE_P256DH}}, "auth"),
        ({**body, "keys": {"p256dh": "AAAA", "auth": SAMPLE_AUTH}}, "p256dh"),
        ({**body, "keys": {"p256dh": SAMPLE_P256DH, "auth": "%%%"}}, "auth"),
        ({**body, "colour": "red"}, "colour"),
        ({**body, "recipient": "DEMO-C0001"}, "recipient"),  # a customer names nobody
    ]
    for payload, field in bad:
        response = browser.post(PUSH_URL, payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert field in response.content.decode(), (field, response.content)

    # Dispatchers register for a recipient they name; a driver without a recipient and
    # a manager may not; no login, no key.
    other = {**body, "endpoint": "https://push.example.com/send/def", "recipient": "DEMO-C0001"}
    assert (
        client_for(make_user("dispatcher")).post(PUSH_URL, other, format="json").status_code == 201
    )
    assert client_for(make_user("driver")).post(PUSH_URL, body, format="json").status_code == 403
    assert client_for(make_user("manager")).post(PUSH_URL, body, format="json").status_code == 403
    assert client_for(None).get("/api/v1/queue/notifications/push/key").status_code == 401
    settings.VAPID_PRIVATE_KEY, settings.VAPID_KEY_FILE = "", "/nonexistent/vapid.key"
    unconfigured = browser.get("/api/v1/queue/notifications/push/key")
    assert unconfigured.status_code == 404
    assert "generate_vapid_keys" in unconfigured.json()["error"]["message"]
    assert PushSubscription.objects.count() == 2


def test_the_recipient_admin_saves_a_push_subscription_with_its_keys(kinds, admin_client):
    recipient = make_recipient()
    page = admin_client.get(f"/admin/notifications/recipient/{recipient.id}/change/")
    form = page.content.decode()
    assert 'name="push_subscriptions-__prefix__-p256dh"' in form
    assert 'name="push_subscriptions-__prefix__-auth"' in form


def test_admins_resend_failed_messages_after_confirming(kinds, admin_client):
    make_recipient()
    failed, sent = services.send("booking_reminder", "DEMO-C0001", CONTEXT)
    Message.objects.filter(id=failed.id).update(status=MessageStatus.FAILED, error="boom")
    Message.objects.filter(id=sent.id).update(status=MessageStatus.SENT)
    action = {"action": "resend", "_selected_action": [str(failed.id), str(sent.id)]}

    page = admin_client.post("/admin/notifications/message/", action)
    assert "Confirm: send these failed messages again" in page.content.decode()
    assert Message.objects.get(id=failed.id).status == MessageStatus.FAILED
    before = Job.objects.count()

    done = admin_client.post("/admin/notifications/message/", {**action, "confirm": "yes"})
    assert done.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.error) == (MessageStatus.QUEUED, "")
    assert Job.objects.count() == before + 1
    assert Job.objects.get(id=failed.job_id).kwargs == {"message_id": failed.id}
    assert Message.objects.get(id=sent.id).status == MessageStatus.SENT  # not failed: left
    entry = LogEntry.objects.get(object_id=str(failed.id))
    assert entry.change_message.startswith(f"resent (delivery job {failed.job_id})")

    # Staff without the right to send notifications do not get the action.
    staff = make_user("manager")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    staff_client = Client()
    staff_client.force_login(staff)
    listing = staff_client.get("/admin/notifications/message/").content.decode()
    assert 'value="resend"' not in listing
    staff_client.post("/admin/notifications/message/", {**action, "confirm": "yes"})
    assert Job.objects.count() == before + 1
    assert LogEntry.objects.count() == 1


def test_admins_send_a_kind_to_selected_recipients_as_a_batch_job(kinds, admin_client):
    first, second = make_recipient("DEMO-C0001"), make_recipient("DEMO-C0002")
    action = {"action": "send_kind", "_selected_action": [str(first.id), str(second.id)]}
    form = admin_client.post("/admin/notifications/recipient/", action)
    assert 'name="kind"' in form.content.decode()
    assert not Job.objects.exists()

    chosen = {**action, "confirm": "yes", "kind": "booking_reminder", "channel": "sms"}
    lacking = admin_client.post(
        "/admin/notifications/recipient/", {**chosen, "context": '{"booking": "B-1"}'}
    )
    assert "lacks date, location" in lacking.content.decode()
    assert not Job.objects.exists()

    done = admin_client.post(
        "/admin/notifications/recipient/", {**chosen, "context": json.dumps(CONTEXT)}
    )
    assert done.status_code == 302
    job = Job.objects.get()
    assert job.task_name == "notifications.send_batch"
    assert job.kwargs == {
        "kind": "booking_reminder",
        "recipients": ["DEMO-C0001", "DEMO-C0002"],
        "context": CONTEXT,
        "urgent": False,
        "channel": "sms",
    }
    assert job.enqueued_by.username == "admin"
    assert LogEntry.objects.filter(change_message__contains=str(job.id)).count() == 2


def test_a_missing_public_url_is_warned_about_without_debug(settings):
    settings.DEBUG = False
    settings.NOTIFICATIONS_PUBLIC_URL = ""
    assert [e.id for e in check_public_url()] == ["notifications.W001"]
    settings.NOTIFICATIONS_PUBLIC_URL = "taskyard.example.com"
    assert [e.id for e in check_public_url()] == ["notifications.W002"]
    settings.NOTIFICATIONS_PUBLIC_URL = "https://taskyard.example.com"
    assert check_public_url() == []
    settings.DEBUG, settings.NOTIFICATIONS_PUBLIC_URL = True, ""
    assert check_public_url() == []


def test_the_outbox_lists_push_and_webhook_deliveries_from_the_log(kinds, admin_client):
    recipient = make_recipient(email="", phone="")
    endpoint = WebhookEndpoint.objects.create(
        recipient=recipient, url="https://hooks.example.com/in", secret="s"
    )
    PushSubscription.objects.create(
        recipient=recipient,
        endpoint="https://push.example.com/send/abc",
        p256dh=SAMPLE_P256DH,
        auth=SAMPLE_AUTH,
    )
    pushed, hooked = services.send("booking_reminder", recipient.ref, CONTEXT)
    Message.objects.filter(id=pushed.id).update(
        status=MessageStatus.DELIVERED, sent_at=pushed.created_at
    )
    Message.objects.filter(id=hooked.id).update(
        status=MessageStatus.FAILED, error="the endpoint answered 410"
    )
    page = admin_client.get("/admin/notifications/message/outbox/").content.decode()
    web_push = page[page.index("<h2>Web Push") : page.index("<h2>Webhooks")]
    webhooks = page[page.index("<h2>Webhooks") :]
    assert "https://push.example.com/send/abc" in web_push and "delivered" in web_push
    assert endpoint.url in webhooks and "failed: the endpoint answered 410" in webhooks

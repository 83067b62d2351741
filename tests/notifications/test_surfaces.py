"""The work without a worker: templates checked at save and versioned in the admin, the
send entry point's refusals and de-duplication, preferences and the unsubscribe link, the
API's contract and roles, the history, and a failing webhook endpoint disabled with an
alert."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction

from devstack.fakes import sendgrid as sendgrid_fake
from devstack.fakes import twilio as twilio_fake
from devstack.fakes import webhooks as receiver_fake
from notifications import services
from notifications.models import (
    Message,
    MessageStatus,
    Preference,
    Recipient,
    Template,
    WebhookEndpoint,
)
from queueing import Job
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

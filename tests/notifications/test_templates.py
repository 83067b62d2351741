"""Templates: the sandbox (tags and context a template may reach), the locale a
recipient's message is written in, and a kind's variables kept in step with the
templates that use them. Service level, no worker."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from notifications import rendering, services
from notifications.models import Message, MessageKind, PushSubscription, Recipient, Template
from queueing import Job
from tests.notifications.conftest import make_recipient

pytestmark = pytest.mark.django_db

CONTEXT = {"booking": "B-1", "date": "Tue 1 Dec 2026 07:30", "location": "Oudegracht 1"}


# --- The sandbox ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "tag"),
    [
        ("{% load i18n %}{% trans 'Pickup' %} {{ booking }}", "load"),
        ("{% extends 'admin/base.html' %}{{ booking }}", "extends"),
        ("{% include 'admin/base.html' %}", "include"),
        ("{{ booking }}{% debug %}", "debug"),
    ],
)
def test_a_template_with_a_tag_outside_the_sandbox_is_refused_at_save(kinds, body, tag):
    with pytest.raises(ValidationError, match=f"the tag {{% {tag} %}} is not allowed"):
        Template.objects.create(
            kind=kinds["booking_reminder"], channel="sms", locale="de", body=body
        )
    assert not Template.objects.filter(locale="de").exists()


@pytest.mark.parametrize(
    "body", ["{% extends 'admin/base.html' %}", "{% load i18n %}", "{% debug %}{{ booking }}"]
)
def test_a_row_written_around_save_with_such_a_tag_does_not_render(kinds, body):
    """The engine itself knows no tag outside the sandbox: a row that never went through
    Template.save (bulk_create, a raw UPDATE) cannot load, extend or dump the context."""
    make_recipient()
    Template.objects.bulk_create(
        [Template(kind=kinds["booking_reminder"], channel="sms", locale="en", version=9, body=body)]
    )
    with pytest.raises(services.NotificationError, match="Invalid block tag"):
        services.send("booking_reminder", "DEMO-C0001", CONTEXT, channel="sms")
    assert not Message.objects.exists() and not Job.objects.exists()
    with pytest.raises(rendering.TemplateProblem, match="Invalid block tag"):
        rendering.render(body, CONTEXT)


class Secretive:
    """An object a caller might put in a context by mistake: a template must not reach
    its attributes or call its methods."""

    secret = "s3cret"
    calls: list[str] = []

    def reveal(self) -> str:
        self.calls.append("reveal")
        return self.secret


def test_a_template_cannot_reach_the_attributes_of_a_non_json_object(kinds):
    make_recipient()
    with pytest.raises(rendering.TemplateProblem, match="booking is a Secretive, not a JSON"):
        rendering.render("{{ booking.secret }} {{ booking.reveal }}", {"booking": Secretive()})
    with pytest.raises(services.NotificationError, match=r"booking\.ref is a Secretive"):
        services.send(
            "booking_reminder", "DEMO-C0001", {**CONTEXT, "booking": {"ref": Secretive()}}
        )
    assert Secretive.calls == []
    assert not Message.objects.exists() and not Job.objects.exists()


def test_attribute_lookups_on_json_values_change_nothing_outside_their_render(kinds):
    """``{{ booking.clear }}`` calls dict.clear on the render's own copy: the body,
    rendered after the subject, and the logged context still have the booking."""
    kind = kinds["booking_reminder"]
    Template.objects.create(
        kind=kind,
        channel="push",
        locale="en",
        version=2,
        subject="{{ booking.clear }}[{{ booking.ref }}]",
        body="Pickup {{ booking.ref }} at {{ location.upper }}",
    )
    make_recipient(email="", phone="")
    PushSubscription.objects.create(
        recipient=Recipient.objects.get(),
        endpoint="https://push.example.com/send/abc",
        p256dh="p",
        auth="a",
    )
    [message] = services.send(
        "booking_reminder", "DEMO-C0001", {**CONTEXT, "booking": {"ref": "B-1"}}, channel="push"
    )
    assert (message.subject, message.body) == ("None[]", "Pickup B-1 at OUDEGRACHT 1")
    assert Message.objects.get().context["booking"] == {"ref": "B-1"}


# --- Locales ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "channel", "written_in"),
    [
        ("nl", "sms", "nl"),
        ("nl-BE", "email", "nl"),  # the region has none: its language
        ("nl_be", "sms", "nl"),
        ("NL", "sms", "nl"),
        ("nl", "push", "en"),  # Dutch has no push template: the default locale
        ("de", "sms", "en"),
        ("fr-CA", "email", "en"),
    ],
)
def test_a_recipient_gets_their_locale_else_its_language_else_the_default(
    kinds, locale, channel, written_in
):
    recipient = make_recipient(locale=locale)
    if channel == "push":
        PushSubscription.objects.create(
            recipient=recipient, endpoint="https://push.example.com/s/1", p256dh="p", auth="a"
        )
    [message] = services.send("booking_reminder", recipient.ref, CONTEXT, channel=channel)
    assert message.template.locale == written_in
    expected = Template.objects.get(
        kind__name="booking_reminder", channel=channel, locale=written_in
    )
    assert message.body == rendering.render(expected.body, message.context)


def test_a_regional_template_wins_over_its_language(kinds):
    kind = kinds["booking_reminder"]
    Template.objects.create(
        kind=kind, channel="sms", locale="nl-BE", body="Ophaling {{ booking }} (België)."
    )
    [flemish] = services.send(
        "booking_reminder", make_recipient("B1", locale="nl_BE").ref, CONTEXT, channel="sms"
    )
    [dutch] = services.send(
        "booking_reminder", make_recipient("N1", locale="nl").ref, CONTEXT, channel="sms"
    )
    assert flemish.body == "Ophaling B-1 (België)."
    assert dutch.body.startswith("Taskyard: ophaling B-1")


def test_no_template_in_the_locale_nor_the_default_is_refused_or_skipped(kinds):
    """payment_reminder has no push template in any locale: naming the channel is
    refused, and a send on every channel leaves push out."""
    recipient = make_recipient(locale="de")
    invoice = {"invoice": "INV-1", "amount": "1.00", "currency": "EUR", "dueDate": "2026-12-15"}
    with pytest.raises(services.NotificationError, match="payment_reminder has no push template"):
        services.send("payment_reminder", recipient.ref, invoice, channel="push")
    sent = services.send("payment_reminder", recipient.ref, invoice)
    assert sorted((m.channel, m.template.locale) for m in sent) == [("email", "en"), ("sms", "en")]


# --- A kind's variables and its templates -----------------------------------------------


@pytest.fixture
def depot_closed(db) -> MessageKind:
    """A kind whose SMS template v1 used ``date`` and whose v2 (in use) does not."""
    kind = MessageKind.objects.create(name="depot_closed", variables=["depot", "date"])
    Template.objects.create(kind=kind, channel="sms", body="{{ depot }} is closed on {{ date }}.")
    Template.objects.create(
        kind=kind, channel="sms", version=2, body="Depot {{ depot }} is closed today."
    )
    Template.objects.create(
        kind=kind,
        channel="email",
        subject="{{ depot }} closed",
        body="See you, {{ recipient_name }}.",
    )
    return kind


def test_removing_a_variable_templates_in_use_need_is_refused_naming_them(depot_closed):
    depot_closed.variables = ["date"]
    with pytest.raises(ValidationError) as refused:
        depot_closed.save()
    problems = refused.value.message_dict["variables"]
    assert len(problems) == 2
    assert "depot_closed/email/en v1 (subject): unknown variable(s) depot" in problems[0]
    assert "depot_closed/sms/en v2 (body): unknown variable(s) depot" in problems[1]
    assert MessageKind.objects.get(name="depot_closed").variables == ["depot", "date"]


def test_removing_a_variable_only_an_old_version_used_is_allowed(depot_closed):
    depot_closed.variables = ["depot"]
    depot_closed.save()  # v1 used date, but sends pick v2
    assert MessageKind.objects.get(name="depot_closed").variables == ["depot"]
    make_recipient()
    [text] = services.send("depot_closed", "DEMO-C0001", {"depot": "Utrecht"}, channel="sms")
    assert text.body == "Depot Utrecht is closed today."


def test_the_admin_shows_which_templates_stop_a_change_of_variables(depot_closed, admin_client):
    url = f"/admin/notifications/messagekind/{depot_closed.id}/change/"
    form = {"name": "depot_closed", "description": "", "sample": "{}"}
    page = admin_client.post(url, {**form, "variables": json.dumps(["date"])})
    assert page.status_code == 200  # the form again, with the error
    text = page.content.decode()
    assert "depot_closed/sms/en v2 (body): unknown variable(s) depot" in text
    assert MessageKind.objects.get(name="depot_closed").variables == ["depot", "date"]

    not_names = admin_client.post(url, {**form, "variables": json.dumps({"depot": 1})})
    assert "a list of variable names" in not_names.content.decode()

    done = admin_client.post(url, {**form, "variables": json.dumps(["depot", "date", "reason"])})
    assert done.status_code == 302
    assert MessageKind.objects.get(name="depot_closed").variables == ["depot", "date", "reason"]

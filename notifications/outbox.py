"""The admin's Outbox: what the local provider fakes received (development only).

In development the SendGrid and Twilio providers point at the fakes of ``make run``
(devstack/fakes); each fake lists what it received at ``GET /_fake/requests``. This page
reads those lists, so a developer sees the emails and SMS that "went out" without an
account. A provider whose base URL is not on loopback is a real one: the page says so
and shows nothing for it.

Web Push and webhooks have no local fake in ``make run`` (each push goes to the
browser's own push service, each webhook to the customer's URL) and answer at once, so
their sections list our own delivery log: the latest push and webhook messages sent,
with the answer they got.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

FAKE_TIMEOUT_SECONDS = 2
LATEST = 100  # messages shown per provider


def _is_local(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost"))


def _received(base_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/_fake/requests", timeout=FAKE_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


def _when(stamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)


def _emails(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for request in requests:
        if request.get("route") != "mail.send":
            continue
        try:
            payload = json.loads(request["body"])
        except (ValueError, KeyError):
            continue
        content = (payload.get("content") or [{}])[0].get("value", "")
        for personalization in payload.get("personalizations", []):
            for to in personalization.get("to", []):
                rows.append(
                    {
                        "at": _when(request["at"]),
                        "to": to.get("email"),
                        "subject": payload.get("subject", ""),
                        "body": content,
                        "status": request.get("status"),
                    }
                )
    return rows


def _sms(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for request in requests:
        if request.get("route") != "messages.create":
            continue
        form = {k: v[-1] for k, v in parse_qs(request.get("body", "")).items()}
        rows.append(
            {
                "at": _when(request["at"]),
                "to": form.get("To"),
                "subject": "",
                "body": form.get("Body", ""),
                "status": request.get("status"),
            }
        )
    return rows


def _logged(channel: str) -> list[dict[str, Any]]:
    """The latest messages of ``channel`` that went out (or were refused), newest first."""
    from notifications.models import Message, MessageStatus

    went_out = Q(sent_at__isnull=False) | Q(status=MessageStatus.FAILED)
    sent = Message.objects.filter(went_out, channel=channel).order_by("-updated_at")[:LATEST]
    return [
        {
            "at": message.sent_at or message.updated_at,
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
            "status": message.status + (f": {message.error}" if message.error else ""),
        }
        for message in sent
    ]


def outbox_view(request: HttpRequest) -> HttpResponse:
    sections = []
    for provider, title, parse in (("sendgrid", "Email", _emails), ("twilio", "SMS", _sms)):
        base_url = settings.TASKYARD_PROVIDERS[provider]["base_url"]
        section: dict[str, Any] = {"title": title, "url": base_url, "rows": [], "error": ""}
        if not _is_local(base_url):
            section["error"] = "not a local fake: the real provider is configured"
        else:
            try:
                section["rows"] = sorted(
                    parse(_received(base_url)), key=lambda r: r["at"], reverse=True
                )[:LATEST]
            except (httpx.HTTPError, ValueError) as exc:
                section["error"] = f"the fake does not answer ({exc!r}); is `make run` up?"
        sections.append(section)
    for channel, title in (("push", "Web Push"), ("webhook", "Webhooks")):
        url = "our delivery log (no local fake: the push service's or endpoint's answer)"
        sections.append({"title": title, "url": url, "rows": _logged(channel), "error": ""})
    context = {"title": "Outbox (local provider fakes)", "sections": sections}
    return TemplateResponse(request, "notifications/outbox.html", context)

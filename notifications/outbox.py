"""The admin's Outbox: what the local provider fakes received (development only).

In development the SendGrid and Twilio providers point at the fakes of ``make run``
(devstack/fakes); each fake lists what it received at ``GET /_fake/requests``. This page
reads those lists, so a developer sees the emails and SMS that "went out" without an
account. A provider whose base URL is not on loopback is a real one: the page says so
and shows nothing for it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from django.conf import settings
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
    context = {"title": "Outbox (local provider fakes)", "sections": sections}
    return TemplateResponse(request, "notifications/outbox.html", context)

"""System checks of notifications (``manage.py check``, and before runserver and
migrate): the settings a production deployment cannot do without."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error


def check_public_url(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """PUBLIC_URL is required outside DEBUG: unsubscribe links in every email and
    Twilio's status callbacks are absolute URLs built from it. A migrations check
    (settings.KEYLESS_COMMAND) sends nothing and needs neither."""
    url = settings.NOTIFICATIONS_PUBLIC_URL
    if settings.DEBUG or settings.KEYLESS_COMMAND:
        return []
    if not url:
        return [
            Error(
                "PUBLIC_URL is not set: emails' unsubscribe links and Twilio's status "
                "callbacks need our public base URL",
                hint="set PUBLIC_URL, e.g. https://taskyard.example.com",
                id="notifications.E001",
            )
        ]
    if not url.startswith(("https://", "http://")):
        return [
            Error(
                f"PUBLIC_URL {url!r} is not an absolute http(s) URL",
                hint="e.g. https://taskyard.example.com",
                id="notifications.E002",
            )
        ]
    return []

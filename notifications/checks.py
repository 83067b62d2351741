"""System checks of notifications (``manage.py check``, and before runserver and
migrate): the settings a production deployment cannot do without. Warnings, not errors:
a deployment step that sends nothing (migrate, Flower, a migrations check) must still
run, and the warning is printed where a deploy looks (migrate's output)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def check_public_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """PUBLIC_URL is needed outside DEBUG: unsubscribe links in every email and
    Twilio's status callbacks are absolute URLs built from it. A migrations check
    (settings.KEYLESS_COMMAND) sends nothing and needs neither."""
    url = settings.NOTIFICATIONS_PUBLIC_URL
    if settings.DEBUG or settings.KEYLESS_COMMAND:
        return []
    if not url:
        return [
            checks.Warning(
                "PUBLIC_URL is not set: emails' unsubscribe links and Twilio's status "
                "callbacks need our public base URL",
                hint="set PUBLIC_URL, e.g. https://taskyard.example.com",
                id="notifications.W001",
            )
        ]
    if not url.startswith(("https://", "http://")):
        return [
            checks.Warning(
                f"PUBLIC_URL {url!r} is not an absolute http(s) URL",
                hint="e.g. https://taskyard.example.com",
                id="notifications.W002",
            )
        ]
    return []

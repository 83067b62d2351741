"""The delivery channels behind one interface (:class:`notifications.channels.base.Channel`):
email (Django mail + django-anymail, SendGrid), SMS (Twilio), Web Push (pywebpush) and
outbound webhooks (HMAC-signed). Every provider call goes through ``provider_call``."""

from __future__ import annotations

from notifications.channels.base import Channel, SendResult, Undeliverable
from notifications.channels.email import EmailChannel
from notifications.channels.push import PushChannel
from notifications.channels.sms import SmsChannel
from notifications.channels.webhook import WebhookChannel

CHANNELS: dict[str, Channel] = {
    channel.name: channel
    for channel in (EmailChannel(), SmsChannel(), PushChannel(), WebhookChannel())
}


def channel_for(name: str) -> Channel:
    try:
        return CHANNELS[name]
    except KeyError:
        raise ValueError(f"unknown channel {name!r}; channels: {', '.join(CHANNELS)}") from None


__all__ = ["CHANNELS", "Channel", "SendResult", "Undeliverable", "channel_for"]

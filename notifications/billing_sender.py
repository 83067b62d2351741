"""Billing's customer messages (payment reminders, receipts) through this app: the
notifier ``settings.BILLING_NOTIFIER`` names by default.

It implements billing's ``Notifier`` (billing/notify.py): billing never imports this
app, the dotted-path setting joins them. Each message makes sure the billing customer is
a Recipient (ref = the customer's code) and queues the message with :func:`services.send`
in the caller's transaction, so templates, preferences, suppressions, quiet hours, the
delivery log and the providers' retries apply as to every other message, and no network
call happens while billing holds its row lock. docs/notifications.md, docs/billing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from notifications import services
from notifications.models import Recipient, RecipientKind

if TYPE_CHECKING:
    from billing.notify import BillingMessage

# Billing's keys ("reminder:12", "receipt:7") are unique within billing; the prefix keeps
# them apart from other senders' keys in the one dedupe column.
KEY_PREFIX = "billing:"


def ensure_recipient(message: BillingMessage) -> Recipient:
    """The customer's Recipient, created on first use. Billing's contact details win
    where billing has one (an address changed in billing reaches the next message); a
    detail billing lacks (a phone only notifications knows) is kept."""
    contact = {"name": message.customer_name, "email": message.to_email, "phone": message.to_phone}
    recipient, created = Recipient.objects.get_or_create(
        ref=message.recipient_ref, defaults={"kind": RecipientKind.CUSTOMER, **contact}
    )
    if not created:
        changed = {f: v for f, v in contact.items() if v and getattr(recipient, f) != v}
        if changed:
            Recipient.objects.filter(id=recipient.id).update(**changed)
            for name, value in changed.items():
                setattr(recipient, name, value)
    return recipient


class NotificationsNotifier:
    """Queues billing's messages as notifications (every channel the customer can and
    wants to get the kind on); one message per key and channel, whatever the retries."""

    def send(self, message: BillingMessage) -> None:
        if not message.recipient_ref:
            raise services.NotificationError(f"{message.kind}: no customer code to send to")
        ensure_recipient(message)
        services.send(
            message.kind,
            message.recipient_ref,
            message.data,
            dedupe_key=f"{KEY_PREFIX}{message.key}" if message.key else None,
        )

"""How billing tells a customer something (payment reminders, receipts), without
depending on the notifications app.

Billing builds a :class:`BillingMessage` and hands it to the notifier named by
``settings.BILLING_NOTIFIER`` (a dotted path to a class or factory taking no arguments).
The default, :class:`EmailNotifier`, sends a plain email through Django's mail API; the
notifications app can later point the setting at its own sender (templates, preferences,
SMS), which only has to implement :class:`Notifier`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import send_mail
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class BillingMessage:
    """``kind`` is the template name ("payment_reminder", "payment_receipt"); ``data`` its
    variables, e.g. the seed's payment_reminder {invoice, customer, amount, currency,
    dueDate}. ``key`` is unique per message, for a sender that de-duplicates."""

    kind: str
    to_email: str
    customer_name: str
    data: dict[str, Any] = field(default_factory=dict)
    key: str = ""


class Notifier(Protocol):
    def send(self, message: BillingMessage) -> None:
        """Deliver ``message`` or raise (the job retries by the platform's policy)."""


SUBJECTS = {
    "payment_reminder": "Payment reminder: invoice {invoice}",
    "payment_receipt": "Receipt: invoice {invoice} is paid",
}
BODIES = {
    "payment_reminder": (
        "Dear {customer},\n\nInvoice {invoice} of {amount} {currency} is due on {dueDate}.\n"
        "If you have paid it already, please ignore this message.\n"
    ),
    "payment_receipt": (
        "Dear {customer},\n\nWe received {amount} {currency} for invoice {invoice}. Thank you.\n"
    ),
}


class EmailNotifier:
    """A plain-text email per message through Django's configured email backend."""

    def send(self, message: BillingMessage) -> None:
        values = {"customer": message.customer_name, **message.data}
        subject = SUBJECTS.get(message.kind, message.kind).format(**values)
        body = BODIES.get(message.kind, "{customer}\n").format(**values)
        send_mail(subject, body, None, [message.to_email], fail_silently=False)


@functools.cache
def _notifier(path: str) -> Notifier:
    notifier: Notifier = import_string(path)()
    return notifier


def get_notifier() -> Notifier:
    return _notifier(settings.BILLING_NOTIFIER)

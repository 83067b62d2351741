"""How billing tells a customer something (payment reminders, receipts), without
depending on the notifications app.

Billing builds a :class:`BillingMessage` and hands it to the notifier named by
``settings.BILLING_NOTIFIER`` (a dotted path to a class or factory taking no arguments),
inside the transaction of the job that sends it. The default is the notifications app's
sender (``notifications.billing_sender.NotificationsNotifier``: templates, preferences,
email and SMS, a delivery log, retries), which queues its messages in that transaction.
:class:`EmailNotifier` is the fallback without the notifications app: a plain email
through Django's mail API, sent after the transaction commits. docs/billing.md.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BillingMessage:
    """``kind`` is the template name ("payment_reminder", "payment_receipt"); ``data`` its
    variables, e.g. the seed's payment_reminder {invoice, customer, amount, currency,
    dueDate}. ``key`` is unique per message, for a sender that de-duplicates;
    ``recipient_ref`` is the billing customer's code (the notifications recipient's ref).
    """

    kind: str
    to_email: str
    customer_name: str
    data: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    recipient_ref: str = ""
    to_phone: str = ""


class Notifier(Protocol):
    def send(self, message: BillingMessage) -> None:
        """Deliver ``message`` (or queue it in the caller's transaction) or raise (the job
        retries by the platform's policy). Must not hold the caller's transaction open
        on a network call: billing calls it with a row locked."""


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
    """A plain-text email per message through Django's configured email backend: the
    fallback when the notifications app is not used. Inside a transaction the email
    goes out once it commits (no SMTP while billing holds a row lock), at most once: a
    failure then is logged at ERROR, not retried. Outside one it is sent at once and a
    failure raises (the job retries). A customer without an email address is skipped."""

    def send(self, message: BillingMessage) -> None:
        if not message.to_email:
            log.info("%s %s: the customer has no email address", message.kind, message.key)
            return
        values = {"customer": message.customer_name, **message.data}
        subject = SUBJECTS.get(message.kind, message.kind).format(**values)
        body = BODIES.get(message.kind, "{customer}\n").format(**values)

        def deliver() -> None:
            send_mail(subject, body, None, [message.to_email], fail_silently=False)

        if transaction.get_connection().in_atomic_block:
            transaction.on_commit(deliver, robust=True)
        else:
            deliver()


@functools.cache
def _notifier(path: str) -> Notifier:
    notifier: Notifier = import_string(path)()
    return notifier


def get_notifier() -> Notifier:
    return _notifier(settings.BILLING_NOTIFIER)

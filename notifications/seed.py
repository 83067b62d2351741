"""The seed message kinds and their first templates (data migrations 0002 and 0003, and
``demo.seed``). Templates use only their kind's variables (checked when saved); a kind
added here needs a data migration calling :func:`seed` for databases migrated before."""

from __future__ import annotations

from typing import Any

KINDS: dict[str, dict[str, Any]] = {
    "booking_reminder": {
        "description": "Before a pickup or booking (T-24 h, T-1 h, T-15 min)",
        "variables": ["booking", "customer", "email", "phone", "date", "location"],
        "sample": {
            "booking": "DEMO-B-0001",
            "customer": "Anna de Vries",
            "email": "anna@example.com",
            "phone": "+31612345678",
            "date": "Tue 1 Dec 2026 07:30",
            "location": "Oudegracht 1, Utrecht",
        },
    },
    "payment_reminder": {
        "description": "An invoice is due or overdue (billing)",
        "variables": ["invoice", "customer", "amount", "currency", "dueDate"],
        "sample": {
            "invoice": "INV-2026-0001",
            "customer": "Anna de Vries",
            "amount": "42.35",
            "currency": "EUR",
            "dueDate": "2026-12-15",
        },
    },
    "payment_receipt": {
        "description": "An invoice was paid (billing)",
        "variables": ["invoice", "customer", "amount", "currency", "paidDate"],
        "sample": {
            "invoice": "INV-2026-0001",
            "customer": "Anna de Vries",
            "amount": "42.35",
            "currency": "EUR",
            "paidDate": "2026-12-03",
        },
    },
}

# (kind, channel, locale): (subject, body)
TEMPLATES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("booking_reminder", "email", "en"): (
        "Reminder: pickup {{ booking }} on {{ date }}",
        "Hello {{ customer }},\n\nWe collect at {{ location }} on {{ date }} "
        "(booking {{ booking }}). Please have your containers at the kerb.\n\n"
        "Unsubscribe: {{ unsubscribe_url }}",
    ),
    ("booking_reminder", "sms", "en"): (
        "",
        "Taskyard: pickup {{ booking }} at {{ location }} on {{ date }}.",
    ),
    ("booking_reminder", "push", "en"): (
        "Pickup {{ date }}",
        "{{ location }} (booking {{ booking }})",
    ),
    ("booking_reminder", "webhook", "en"): ("", "booking {{ booking }} at {{ date }}"),
    ("booking_reminder", "email", "nl"): (
        "Herinnering: ophaling {{ booking }} op {{ date }}",
        "Beste {{ customer }},\n\nWe halen op bij {{ location }} op {{ date }} "
        "(boeking {{ booking }}). Zet uw containers aan de straat.\n\n"
        "Afmelden: {{ unsubscribe_url }}",
    ),
    ("booking_reminder", "sms", "nl"): (
        "",
        "Taskyard: ophaling {{ booking }} bij {{ location }} op {{ date }}.",
    ),
    ("payment_reminder", "email", "en"): (
        "Invoice {{ invoice }}: {{ currency }} {{ amount }} due {{ dueDate }}",
        "Hello {{ customer }},\n\nInvoice {{ invoice }} of {{ currency }} {{ amount }} is due "
        "on {{ dueDate }}.\n\nUnsubscribe: {{ unsubscribe_url }}",
    ),
    ("payment_reminder", "sms", "en"): (
        "",
        "Taskyard: invoice {{ invoice }} ({{ currency }} {{ amount }}) is due {{ dueDate }}.",
    ),
    ("payment_receipt", "email", "en"): (
        "Receipt: invoice {{ invoice }} is paid",
        "Hello {{ customer }},\n\nWe received {{ currency }} {{ amount }} for invoice "
        "{{ invoice }} on {{ paidDate }}. Thank you.\n\nUnsubscribe: {{ unsubscribe_url }}",
    ),
    ("payment_receipt", "sms", "en"): (
        "",
        "Taskyard: we received {{ currency }} {{ amount }} for invoice {{ invoice }}. Thank you.",
    ),
}


def seed(kind_model: Any, template_model: Any) -> int:
    """Create the missing kinds and first template versions; returns templates made."""
    made = 0
    kinds = {}
    for name, spec in KINDS.items():
        kinds[name], _ = kind_model.objects.get_or_create(name=name, defaults=spec)
    for (kind, channel, locale), (subject, body) in TEMPLATES.items():
        _, created = template_model.objects.get_or_create(
            kind=kinds[kind],
            channel=channel,
            locale=locale,
            version=1,
            defaults={"subject": subject, "body": body},
        )
        made += created
    return made

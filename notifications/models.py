"""Notification tables: who we message (recipients, preferences, push subscriptions),
what we say (message kinds and versioned templates), what we sent (the delivery log),
what must not be sent again (suppressions), bookings whose reminders we send, and the
customers' own webhook endpoints. How they work together: docs/notifications.md."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Web Push"
    WEBHOOK = "webhook", "Webhook"


class RecipientKind(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    DRIVER = "driver", "Driver"


def _business_time_zone() -> str:
    return settings.BUSINESS_TIME_ZONE


class Recipient(models.Model):
    """A customer or driver we message, known to other apps by ``ref`` (a billing
    customer code such as ``DEMO-C0001``, a truck's driver code...)."""

    kind = models.CharField(max_length=16, choices=RecipientKind.choices)
    ref = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="", help_text="E.164")
    locale = models.CharField(max_length=10, default="en")
    time_zone = models.CharField(max_length=64, default=_business_time_zone)
    # Non-urgent messages wait while the recipient's local time is in [start, end); a
    # window may span midnight (22:00-07:00). Both empty: no quiet hours.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    # The customer's or driver's login, if they have one: their browsers register push
    # subscriptions for this recipient (POST notifications/push/subscriptions).
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notification_recipient",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["ref"]
        indexes = [models.Index(fields=["kind", "ref"], name="notif_recipient_kind_idx")]

    def __str__(self) -> str:
        return f"{self.ref} {self.name}"

    def clean(self) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError({"time_zone": f"unknown time zone {self.time_zone!r}"}) from None
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValidationError("quiet hours need both a start and an end")


class Preference(models.Model):
    """A recipient's opt-in or opt-out of one channel for one message kind (``*``: every
    kind). Without a row a channel with an address is opted in."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="preferences")
    kind = models.CharField(max_length=64, help_text="a message kind, or * for all")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    opted_in = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "kind", "channel"], name="notif_preference_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.kind}/{self.channel}: {'in' if self.opted_in else 'out'}"


class PushSubscription(models.Model):
    """A browser's Web Push subscription (the PushSubscription JSON of the Push API)."""

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.endpoint[:60]}"

    def info(self) -> dict:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class BookingStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    CANCELLED = "cancelled", "Cancelled"
    DONE = "done", "Done"


class Booking(models.Model):
    """A pickup or booking that reminders attach to."""

    ref = models.CharField(max_length=64, unique=True)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="bookings")
    scheduled_for = models.DateTimeField()
    location = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=BookingStatus.choices, default=BookingStatus.SCHEDULED
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scheduled_for"]
        indexes = [models.Index(fields=["status", "scheduled_for"], name="notif_booking_due_idx")]

    def __str__(self) -> str:
        return f"{self.ref} {self.scheduled_for:%Y-%m-%d %H:%M}"


class ReminderStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


class Reminder(models.Model):
    """One reminder of a booking at ``offset_seconds`` before it (unique per booking x
    offset); ``due_at`` follows the booking when it moves."""

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="reminders")
    offset_seconds = models.PositiveIntegerField()
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=ReminderStatus.choices, default=ReminderStatus.SCHEDULED
    )
    job_id = models.UUIDField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["booking", "offset_seconds"], name="notif_reminder_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.booking_id} -{self.offset_seconds}s {self.status}"


class MessageKind(models.Model):
    """A kind of message (``booking_reminder``...) and the variables its context must
    carry: templates may use only these, senders must give all of them."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    variables = models.JSONField(default=list, help_text="names the context carries")
    sample = models.JSONField(default=dict, blank=True, help_text="sample context for previews")

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # A change of variables is checked against the templates from any path, as a
        # template is against its kind (Template.save).
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Refuse variables that are not a list of names, and a change of variables that
        the kind's templates in use (the newest version of each channel x locale) do not
        fit: a template naming a removed variable would render it blank at every send.
        The error names the templates; change them first (a new version without the
        variable), then the kind."""
        from notifications.rendering import TemplateProblem, check_template

        if not isinstance(self.variables, list) or not all(
            isinstance(name, str) and name.isidentifier() for name in self.variables
        ):
            raise ValidationError({"variables": ['a list of variable names, such as ["invoice"]']})
        if self.pk is None:
            return
        problems = []
        for template in self.templates_in_use():
            for field in ("subject", "body"):
                try:
                    check_template(getattr(template, field), self.variables)
                except TemplateProblem as exc:
                    problems.append(f"{template} ({field}): {exc}")
        if problems:
            raise ValidationError(
                {
                    "variables": [
                        f"templates in use do not fit these variables: {problem}"
                        for problem in problems
                    ]
                }
            )

    def templates_in_use(self) -> list[Template]:
        """The newest version of each of the kind's channel x locale templates: the ones
        sends pick."""
        newest: dict[tuple[str, str], Template] = {}
        for template in self.templates.order_by("channel", "locale", "-version"):
            newest.setdefault((template.channel, template.locale), template)
        return list(newest.values())


class Template(models.Model):
    """One version of the template of a kind x channel x locale. Rows are never edited:
    saving a change adds the next version, and a message records the version it used."""

    kind = models.ForeignKey(MessageKind, on_delete=models.PROTECT, related_name="templates")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    locale = models.CharField(max_length=10, default="en")
    version = models.PositiveIntegerField(default=1)
    subject = models.CharField(max_length=300, blank=True, default="", help_text="email, push")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind__name", "channel", "locale", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "channel", "locale", "version"], name="notif_template_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind.name}/{self.channel}/{self.locale} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        # Missing variables are an error when the template is saved, from any path.
        self.full_clean(exclude=["version"], validate_unique=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from notifications.rendering import TemplateProblem, check_template

        if self.kind_id is None:
            return
        problems: dict[str, list[str]] = {}
        for field in ("subject", "body"):
            try:
                check_template(getattr(self, field), self.kind.variables)
            except TemplateProblem as exc:
                problems[field] = [str(exc)]
        if problems:
            raise ValidationError(problems)


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATUSES = (
    MessageStatus.DELIVERED,
    MessageStatus.BOUNCED,
    MessageStatus.FAILED,
    MessageStatus.SUPPRESSED,
    MessageStatus.CANCELLED,
)


class Batch(models.Model):
    """One batch send: a kind to many recipients, fanned out in jobs of ≤ 100."""

    kind = models.CharField(max_length=64)
    channel = models.CharField(max_length=16, blank=True, default="")
    context = models.JSONField(default=dict)
    recipient_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    job_id = models.UUIDField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.id} {self.kind} x {self.recipient_count}"


class Message(models.Model):
    """The delivery log: one row per message and channel, queued → sent →
    delivered / bounced / failed / suppressed."""

    kind = models.CharField(max_length=64)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="messages")
    template = models.ForeignKey(Template, on_delete=models.PROTECT, null=True, blank=True)
    template_version = models.PositiveIntegerField(null=True, blank=True)
    batch = models.ForeignKey(Batch, on_delete=models.SET_NULL, null=True, blank=True)
    booking = models.ForeignKey(Booking, on_delete=models.SET_NULL, null=True, blank=True)
    webhook_endpoint = models.ForeignKey(
        "WebhookEndpoint", on_delete=models.SET_NULL, null=True, blank=True
    )
    # Exactly one message per key (batch x recipient x channel, booking x offset...).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    to = models.CharField(max_length=1000, blank=True, default="")
    subject = models.CharField(max_length=300, blank=True, default="")
    body = models.TextField(blank=True, default="")
    context = models.JSONField(default=dict)
    urgent = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    send_at = models.DateTimeField(null=True, blank=True)
    held_until = models.DateTimeField(null=True, blank=True, help_text="quiet hours")
    # Past this moment the message is pointless (a reminder after its pickup): not sent.
    expires_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True, default="", db_index=True)
    cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    cost_unit = models.CharField(max_length=3, blank=True, default="")
    error = models.TextField(blank=True, default="")
    job_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Engagement, from SendGrid's open and click events.
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="notif_message_history_idx"),
            models.Index(fields=["status", "created_at"], name="notif_message_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.channel} → {self.to or self.recipient_id} {self.status}"


class SuppressionReason(models.TextChoices):
    BOUNCE = "bounce", "Bounced"
    COMPLAINT = "complaint", "Spam complaint"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
    UNDELIVERABLE = "undeliverable", "Undeliverable"
    MANUAL = "manual", "Added by an operator"


class Suppression(models.Model):
    """An address (email, phone) we must not message again on a channel."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=320)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    detail = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "address"], name="notif_suppression_unique")
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address} ({self.reason})"

    def save(self, *args, **kwargs) -> None:
        self.address = self.address_key(self.channel, self.address)
        super().save(*args, **kwargs)

    @staticmethod
    def address_key(channel: str, address: str) -> str:
        """How an address is stored and looked up: an email address lower-cased (a
        complaint about ``anna@example.com`` stops mail to ``Anna@Example.com``; mail
        systems treat addresses without regard to case), others as they are."""
        address = address.strip()
        return address.lower() if channel == Channel.EMAIL else address


class WebhookEndpoint(models.Model):
    """A customer's endpoint for outbound webhooks, HMAC-signed with its own secret;
    disabled after NOTIFICATIONS_WEBHOOK_FAILURE_STREAK failures in a row."""

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=1000)
    secret = models.CharField(max_length=200)
    kinds = models.JSONField(default=list, blank=True, help_text="message kinds; empty: all")
    active = models.BooleanField(default=True)
    failure_streak = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["recipient"], condition=Q(active=True), name="notif_endpoint_active_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.url}"

    @property
    def provider_name(self) -> str:
        """The provider guard's name for this endpoint: one breaker per endpoint."""
        return f"webhook-{self.id}"

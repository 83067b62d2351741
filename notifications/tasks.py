"""The notification jobs: thin, they decode ids and call services (docs/apps.md).

Delivery has one job per channel, so each takes its channel's named rate limit
(TASKYARD_RATE_LIMITS "notifications.<channel>") and is held unclaimed while its
provider's breaker is open or cooling down after a 429."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework import serializers

from notifications import batches, reminders, services
from notifications.models import Channel
from queueing import Contract, Job, PermanentError, job

SEGMENTS = services.SEGMENTS


def _deliver(task: Any, message_id: int) -> dict[str, Any]:
    """Deliver, telling services whether this is the job's last attempt (the ledger
    counts the running attempt in the job's row), so a message whose last attempt fails
    is marked failed at once rather than left queued behind a dead letter."""
    attempts = Job.objects.filter(id=task.request.id).values("attempts", "max_attempts").first()
    last = attempts is not None and attempts["attempts"] >= attempts["max_attempts"]
    return services.deliver(message_id, last_attempt=last)


@job(
    queue="notifications",
    name="notifications.deliver_email",
    bind=True,
    rate_limit="notifications.email",
    providers=("sendgrid",),
)
def deliver_email(self: Any, message_id: int) -> dict[str, Any]:
    """Send one queued email (SendGrid, or SMTP)."""
    return _deliver(self, message_id)


@job(
    queue="notifications",
    name="notifications.deliver_sms",
    bind=True,
    rate_limit="notifications.sms",
    providers=("twilio",),
)
def deliver_sms(self: Any, message_id: int) -> dict[str, Any]:
    """Send one queued SMS through Twilio."""
    return _deliver(self, message_id)


@job(
    queue="notifications",
    name="notifications.deliver_push",
    bind=True,
    rate_limit="notifications.push",
    providers=("webpush",),
)
def deliver_push(self: Any, message_id: int) -> dict[str, Any]:
    """Send one queued Web Push message to the recipient's browsers."""
    return _deliver(self, message_id)


@job(
    queue="notifications",
    name="notifications.deliver_webhook",
    bind=True,
    rate_limit="notifications.webhook",
)
def deliver_webhook(self: Any, message_id: int) -> dict[str, Any]:
    """POST one signed webhook to a customer's endpoint (its own breaker)."""
    return _deliver(self, message_id)


DELIVERY_TASKS: dict[str, Any] = {
    Channel.EMAIL: deliver_email,
    Channel.SMS: deliver_sms,
    Channel.PUSH: deliver_push,
    Channel.WEBHOOK: deliver_webhook,
}


class SendNotificationsArgs(Contract):
    """POST /api/v1/queue/notifications: a kind to named recipients or a segment."""

    kind = serializers.SlugField(max_length=64)
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, allow_empty=False
    )
    segment = serializers.ChoiceField(choices=SEGMENTS, required=False)
    # The serializer's own .context is untouched: DRF pops declared fields off the class.
    context = serializers.DictField(required=False)  # type: ignore[assignment]
    channel = serializers.ChoiceField(choices=Channel.values, required=False)
    urgent = serializers.BooleanField(required=False)
    send_at = serializers.DateTimeField(required=False)

    def validate_kind(self, value: str) -> str:
        try:
            services._kind(value)
        except services.NotificationError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_recipients(self, value: list[str]) -> list[str]:
        limit = settings.NOTIFICATIONS_BATCH_MAX_RECIPIENTS
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} recipients in one batch")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("recipients" in attrs) == ("segment" in attrs):
            raise serializers.ValidationError(
                {"recipients": ["give either recipients or a segment, not both or neither"]}
            )
        # Refused here, not recipient by recipient in the chunk jobs.
        variables = services._kind(attrs["kind"]).variables
        given = {*services.RECIPIENT_VARIABLES, *attrs.get("context", {})}
        missing = [name for name in variables if name not in given]
        if missing:
            raise serializers.ValidationError({"context": [f"lacks {', '.join(missing)}"]})
        return attrs


@job(
    queue="notifications",
    name="notifications.send_batch",
    api=SendNotificationsArgs,
    roles=("dispatcher",),
    atomic=True,
    retry={"max_attempts": 3},
)
def send_batch(
    kind: str,
    recipients: list[str] | None = None,
    segment: str | None = None,
    context: dict[str, Any] | None = None,
    channel: str | None = None,
    urgent: bool = False,
    send_at: str | None = None,
) -> dict[str, Any]:
    """Fan a kind out to recipients in chunk jobs of ≤ 100: named recipients in one batch,
    a segment in as many batches of ≤ NOTIFICATIONS_BATCH_MAX_RECIPIENTS as it needs. A
    send that cannot work as asked (unknown kind or segment, more named recipients than a
    batch takes: arguments that did not come through the API's contract) is a permanent
    error: retrying cannot help."""
    options: dict[str, Any] = {"channel": channel, "urgent": urgent, "send_at": send_at}
    try:
        if recipients is not None:
            made = [batches.start(kind, recipients, context or {}, **options)]
        else:
            made = batches.start_segment(kind, segment or "", context or {}, **options)
    except services.NotificationError as exc:
        raise PermanentError(str(exc)) from exc
    return {"batches": [b.id for b in made], "recipients": sum(b.recipient_count for b in made)}


@job(queue="notifications", name="notifications.send_batch_chunk", atomic=True)
def send_batch_chunk(
    batch_id: int, refs: list[str], urgent: bool = False, send_at: str | None = None
) -> dict[str, Any]:
    """Queue the messages of one chunk of a batch."""
    return batches.send_chunk(batch_id, refs, urgent=urgent, send_at=send_at)


@job(queue="notifications", name="notifications.send_reminder", retry={"max_attempts": 5})
def send_reminder(booking_id: int, offset_seconds: int, scheduled_for: str) -> dict[str, Any]:
    """One booking reminder (T - offset), if the booking still wants it."""
    with transaction.atomic():
        return reminders.run_reminder(booking_id, offset_seconds, scheduled_for)


@job(queue="notifications", name="notifications.ensure_reminders")
def ensure_reminders(hours: int = 48) -> dict[str, Any]:
    """Schedule the missing reminders of bookings in the next ``hours``."""
    return {"bookings": reminders.ensure_upcoming(hours)}


@job(queue="notifications", name="notifications.settle_dead_deliveries")
def settle_dead_deliveries() -> dict[str, Any]:
    """Messages left queued behind a dead (or cancelled) delivery job: failed (or
    cancelled) with the job's reason."""
    return services.settle_dead_deliveries()

"""Data arriving from outside: inbound webhook events (docs/webhooks.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class WebhookStatus(models.TextChoices):
    RECEIVED = "received", "Received, processing queued"
    PROCESSED = "processed", "Processed"
    UNHANDLED = "unhandled", "No handler: kept"
    FAILED = "failed", "Processing failed (see the job)"


class WebhookEvent(models.Model):
    """One verified delivery from a provider, stored before it is acknowledged."""

    source = models.CharField(max_length=32)
    # The provider's own id (Stripe evt_..., Twilio MessageSid:status...); "" if none.
    event_id = models.CharField(max_length=255, blank=True, default="")
    event_type = models.CharField(max_length=255, blank=True, default="")
    payload = models.JSONField()
    # The headers that say who sent it and how it was signed (never cookies or auth).
    headers = models.JSONField(default=dict)
    payload_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.RECEIVED
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # The latest processing job (queueing Job id), for the admin's link.
    job_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            # A provider retrying an event it already delivered is one event.
            models.UniqueConstraint(
                fields=["source", "event_id"],
                condition=~Q(event_id=""),
                name="webhook_event_unique_id",
            )
        ]
        indexes = [
            models.Index(fields=["source", "event_type"], name="webhook_source_type_idx"),
            models.Index(fields=["status", "received_at"], name="webhook_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.event_type or '?'} {self.event_id or self.id}"

"""Data arriving from outside: inbound webhook events (docs/webhooks.md) and the sync of
operational data with external systems: sources, runs, record maps, conflicts
(docs/datasync.md)."""

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


# --- Sync with external systems (docs/datasync.md) ---------------------------------------


class SourceKind(models.TextChoices):
    AIRTABLE = "airtable", "Airtable table"
    REST = "rest", "REST JSON API"
    CSV = "csv", "CSV file"


class ConflictPolicy(models.TextChoices):
    SOURCE_WINS = "source_wins", "Source wins"
    LOCAL_WINS = "local_wins", "Local wins"
    NEWEST_WINS = "newest_wins", "Newest change wins"
    MANUAL = "manual", "Manual review"


class SyncMode(models.TextChoices):
    FULL = "full", "Full (and detect deletions)"
    INCREMENTAL = "incremental", "Incremental (changed since the watermark)"
    DELTA = "delta", "Delta (change feed)"


class SyncSource(models.Model):
    """One external table or collection kept in step with one of our models."""

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=SourceKind.choices)
    target = models.CharField(
        max_length=32, help_text="customers, service_points, vehicles or bookings"
    )
    # Where and how to read: airtable {"base", "table", "modified_field", "token_env",
    # "endpoint_url"}; rest {"url", "pagination": "cursor"|"page", "items", "token_env",
    # "changes_url"}; csv {"path", "id_column", "delimiter"}. See docs/datasync.md.
    config = models.JSONField(default=dict, blank=True)
    # local field -> external field name, or {"from": name, "transforms": [...]}
    field_map = models.JSONField(default=dict)
    # local field -> external field: our side owns these and pushes them out
    outbound_map = models.JSONField(default=dict, blank=True)
    conflict_policy = models.CharField(
        max_length=16, choices=ConflictPolicy.choices, default=ConflictPolicy.SOURCE_WINS
    )
    batch_size = models.PositiveIntegerField(
        default=500, help_text="records committed per transaction (with the checkpoint)"
    )
    # A CSV uploaded in the admin is kept here (no media storage to run); or config "path".
    csv_content = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    scheduled = models.BooleanField(
        default=True, help_text="included in the scheduled syncs (datasync/schedules.py)"
    )
    # Incremental mode reads records changed at or after this: the start of the last
    # successful full or incremental run, less a margin for clock skew.
    watermark = models.DateTimeField(null=True, blank=True)
    # Delta mode: the change feed's cursor after the last delta run.
    delta_cursor = models.CharField(max_length=255, blank=True, default="")
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ABANDONED = "abandoned", "Abandoned (its job ended without it)"


class SyncRun(models.Model):
    """One sync of one source: what it read and wrote, and where it stands."""

    source = models.ForeignKey(SyncSource, on_delete=models.CASCADE, related_name="runs")
    mode = models.CharField(max_length=16, choices=SyncMode.choices)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    job_id = models.UUIDField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    read = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    pushed = models.PositiveIntegerField(default=0)
    # Where a killed run resumes: {"phase": "inbound"|"deletions"|"outbound"|"done",
    # "position": the source's page token, "pages": n, "after_map": id}; written in the
    # transaction of each batch it follows.
    checkpoint = models.JSONField(default=dict, blank=True)
    # The newest remote modification time read (shown; "newest wins" uses each record's).
    newest_change = models.DateTimeField(null=True, blank=True)
    # Incremental: the watermark this run read from.
    since = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One run at a time per source, whatever enqueued it.
            models.UniqueConstraint(
                fields=["source"],
                condition=Q(status="running"),
                name="datasync_one_running_run_per_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.mode} {self.started_at:%Y-%m-%d %H:%M}"

    COUNTS = (
        "read",
        "created",
        "updated",
        "unchanged",
        "deleted",
        "conflicts",
        "invalid",
        "pushed",
    )

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTS}


class RecordMap(models.Model):
    """An external record and our row for it, with a hash of each side at the last sync:
    unchanged records cost no write, and a change on both sides is a conflict."""

    source = models.ForeignKey(SyncSource, on_delete=models.CASCADE, related_name="records")
    external_id = models.CharField(max_length=255)
    local_id = models.BigIntegerField(null=True, blank=True)
    natural_key = models.CharField(max_length=255, blank=True, default="")
    source_hash = models.CharField(max_length=64, blank=True, default="")
    local_hash = models.CharField(max_length=64, blank=True, default="")
    outbound_hash = models.CharField(max_length=64, blank=True, default="")
    remote_modified = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    last_seen_run = models.BigIntegerField(null=True, blank=True)  # a full run's id
    deleted_at = models.DateTimeField(null=True, blank=True)  # gone at the source
    writes = models.PositiveIntegerField(default=0)  # local writes made by the sync

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="datasync_record_unique_external"
            )
        ]
        indexes = [models.Index(fields=["source", "local_id"], name="datasync_record_local_idx")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id} -> {self.local_id}"


class ConflictStatus(models.TextChoices):
    OPEN = "open", "Open"
    SOURCE = "source", "Resolved: source kept"
    LOCAL = "local", "Resolved: local kept"


class SyncConflict(models.Model):
    """A record changed on both sides since the last sync, held under the manual policy."""

    source = models.ForeignKey(SyncSource, on_delete=models.CASCADE, related_name="conflicts")
    record = models.ForeignKey(RecordMap, on_delete=models.CASCADE, related_name="conflicts")
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL)
    source_values = models.JSONField()
    local_values = models.JSONField()
    source_hash = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=ConflictStatus.choices, default=ConflictStatus.OPEN
    )
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["record"], condition=Q(status="open"), name="datasync_one_open_conflict"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.record.external_id} ({self.status})"


class RecordError(models.Model):
    """A record a run could not apply, with the reason; the rest of the run goes on."""

    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.CASCADE, related_name="errors"
    )
    source = models.ForeignKey(SyncSource, on_delete=models.CASCADE, related_name="errors")
    external_id = models.CharField(max_length=255, blank=True, default="")
    reason = models.JSONField(help_text="field -> messages")
    values = models.JSONField(default=dict)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.source} {self.external_id}: {self.reason}"

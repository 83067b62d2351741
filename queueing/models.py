"""The job ledger: every job, every attempt, every dead letter.

The database is the source of truth and the broker only a wake-up channel; the lifecycle
is written down in ../shared/ARCHITECTURE.md ("The job lifecycle") and in
docs/job-ledger.md. Statuses move only through conditional UPDATEs (see
queueing/ledger/transitions.py and queueing/relay/loop.py), never by read-modify-write.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"  # waits for run_at
    QUEUED = "queued", "Queued"  # due; published or about to be
    RUNNING = "running", "Running"  # claimed under a lease
    RETRYING = "retrying", "Retrying"  # failed, waits for run_at to try again
    SUCCEEDED = "succeeded", "Succeeded"
    DEAD = "dead", "Dead"  # failed for good; see its DeadLetter
    CANCELLED = "cancelled", "Cancelled"


# Statuses in which a job can still run; unique keys are unique among these.
ACTIVE_STATUSES = (
    JobStatus.SCHEDULED,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.RETRYING,
)
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)


class JobOrigin(models.TextChoices):
    LEDGER = "ledger", "Enqueued through the ledger"
    ADOPTED = "adopted", "Adopted from a plain Celery message"
    REPLAY = "replay", "Replay of a dead job"


class Job(models.Model):
    # The Celery task id is the job id: AsyncResult(job.id), Flower and the results
    # table all name the job the same way.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=100)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    # Celery publish options the ledger does not model itself (link, link_error, chain,
    # headers, expires...), passed through on every publish.
    options = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    origin = models.CharField(max_length=16, choices=JobOrigin.choices, default=JobOrigin.LEDGER)
    # NULL, not "": jobs without a key must not collide in the unique constraint.
    unique_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    run_at = models.DateTimeField(null=True, blank=True)

    enqueued_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The lease: who runs the job and until when, and the token of the current attempt.
    # The token grows by one per claim; a result is recorded only under the current one.
    lease_owner = models.CharField(max_length=255, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    fencing_token = models.PositiveBigIntegerField(default=0)

    last_error_class = models.CharField(max_length=255, blank=True, default="")
    last_error_message = models.TextField(blank=True, default="")
    last_error_traceback = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    # Reported by the task (self.progress()); throttled writes.
    progress = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True, default="")
    # Set by queueing.control.operations.cancel() on a running job; the task sees it through
    # self.is_cancelled() and stops cooperatively.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    enqueued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )

    class Meta:
        ordering = ["-enqueued_at"]
        indexes = [
            # relay: due scheduled/retrying jobs
            models.Index(
                fields=["run_at"],
                name="job_due_idx",
                condition=Q(status__in=[JobStatus.SCHEDULED, JobStatus.RETRYING]),
            ),
            # relay: queued jobs never published, or published long ago
            models.Index(
                fields=["queue", "published_at"],
                name="job_queued_idx",
                condition=Q(status=JobStatus.QUEUED),
            ),
            # reaper: expired leases
            models.Index(
                fields=["lease_expires_at"],
                name="job_lease_idx",
                condition=Q(status=JobStatus.RUNNING),
            ),
            # admin and stats: per queue and status, newest first; retention by age
            models.Index(fields=["queue", "status", "-enqueued_at"], name="job_queue_status_idx"),
            models.Index(fields=["status", "finished_at"], name="job_status_finished_idx"),
            models.Index(fields=["task_name", "-enqueued_at"], name="job_task_idx"),
            # dashboard and alerts: counts of what is not finished (and dead), small even
            # when the ledger holds a million finished jobs
            models.Index(
                fields=["queue", "status"],
                name="job_open_idx",
                condition=Q(
                    status__in=[
                        JobStatus.SCHEDULED,
                        JobStatus.QUEUED,
                        JobStatus.RUNNING,
                        JobStatus.RETRYING,
                        JobStatus.DEAD,
                    ]
                ),
            ),
            # oldest waiting job per queue (dashboard, /metrics, history): one index probe
            # per queue, the index as big as the backlog
            models.Index(
                fields=["queue", "enqueued_at"],
                name="job_waiting_idx",
                condition=Q(status=JobStatus.QUEUED),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(status__in=ACTIVE_STATUSES),
                name="job_unique_key_active",
            ),
            models.CheckConstraint(
                condition=Q(priority__isnull=True) | Q(priority__lte=9),
                name="job_priority_0_9",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.id}] {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    RETRYING = "retrying", "Failed, will retry"
    DEAD = "dead", "Failed for good"
    LOST = "lost", "Lost (lease expired)"
    SUPERSEDED = "superseded", "Finished after its lease was taken over"
    CANCELLED = "cancelled", "Stopped on a cancel request"


class JobAttempt(models.Model):
    """One run of a job body on a worker, written when the attempt ends (or is reaped)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    fencing_token = models.PositiveBigIntegerField()
    worker = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error_class = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_kind = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["job", "number"]
        indexes = [models.Index(fields=["-finished_at"], name="attempt_finished_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"


class DeadLetterReason(models.TextChoices):
    PERMANENT = "permanent", "Permanent error"
    EXHAUSTED = "exhausted", "Attempts exhausted"
    LOST = "lost", "Lost too many times"


class DeadLetterQuerySet(models.QuerySet["DeadLetter"]):
    def open(self) -> DeadLetterQuerySet:
        """The letters still waiting for a decision: neither replayed nor discarded."""
        return self.filter(replayed_as__isnull=True, discarded_at__isnull=True)


class DeadLetter(models.Model):
    """A dead job waiting for a human: review it, replay it, or discard it."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="dead_letter")
    reason = models.CharField(max_length=16, choices=DeadLetterReason.choices)
    error_class = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Groups dead letters with the same cause: error class plus the message with its
    # numbers and ids blanked out (queueing/ledger/deadletters.py: fingerprint()).
    fingerprint = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    reviewed = models.BooleanField(default=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    discarded_at = models.DateTimeField(null=True, blank=True)
    replayed_as = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DeadLetterQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["reviewed", "-created_at"], name="deadletter_review_idx")]

    def __str__(self) -> str:
        return f"dead letter of {self.job_id} ({self.reason})"


class QueueState(models.Model):
    """The durable, cluster-wide state of a declared queue (paused or not)."""

    name = models.CharField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField(auto_now=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        verbose_name = "queue"

    def __str__(self) -> str:
        return f"{self.name} ({'paused' if self.paused else 'running'})"


class AuditEvent(models.Model):
    """One mutating operator or API action, append-only and hash-chained.

    ``hash`` covers this row's fields and the previous row's hash, so editing, deleting
    or reordering any row breaks the chain from there on (``manage.py verify_audit``).
    Rows are written by queueing.audit.record(), one at a time under a lock.
    """

    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text too: the chain must verify after the user is deleted.
    actor_name = models.CharField(max_length=150, blank=True, default="")
    role = models.CharField(max_length=150, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.target_type}:{self.target_id} by {self.actor_name}"


class AlertStatus(models.TextChoices):
    OPEN = "open"
    RESOLVED = "resolved"


class Alert(models.Model):
    """A threshold crossed (queueing/observe/alerts.py): opened once, updated while it lasts,
    resolved when the condition clears. At most one open alert per key."""

    key = models.CharField(max_length=150)  # kind:queue, e.g. "backlog:billing"
    kind = models.CharField(max_length=32)
    queue = models.CharField(max_length=100, blank=True, default="")
    severity = models.CharField(max_length=16, default="warning")
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default="open")
    message = models.TextField()
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    # An operator's answer (queueing/observe/alert_actions.py): acknowledged = someone is
    # on it, no more notifications unless it gets worse; snoozed = quiet until then.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, default="")
    snoozed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(status="open"), name="alert_one_open_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.key} ({self.status})"


class QueueStat(models.Model):
    """One queue's statistics for one 5-minute bucket (queueing/observe/history.py).

    Written once per bucket by ``queueing.snapshot_queue_stats`` (a rerun leaves the row
    alone: unique on queue and bucket; a late run catches up the buckets it missed), kept
    ``HISTORY_RETENTION_DAYS``. The stats and metrics API, /metrics and the dashboard read
    these and the workers' minute roll-ups instead of the ledger, so their cost does not
    grow with it; the daily report reads the ledger (docs/monitoring.md). Counts by status
    are as seen when the row was taken (``taken_at``, for a caught-up bucket later than its
    end); the rest is about attempts that ended inside the bucket."""

    queue = models.CharField(max_length=100)
    bucket = models.DateTimeField()  # start of the 5 minutes, UTC
    taken_at = models.DateTimeField()
    # live counts when taken (the open statuses: the ledger's partial index job_open_idx)
    scheduled = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    retrying = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    oldest_waiting_seconds = models.FloatField(null=True, blank=True)
    # attempts that ended in the bucket
    attempts = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)  # retrying, dead or lost
    died = models.PositiveIntegerField(default=0)  # failed for good (a dead letter)
    throughput_per_minute = models.FloatField(default=0.0)
    failure_rate = models.FloatField(default=0.0)
    wait_p50_ms = models.FloatField(null=True, blank=True)
    wait_p95_ms = models.FloatField(null=True, blank=True)
    wait_p99_ms = models.FloatField(null=True, blank=True)
    run_p50_ms = models.FloatField(null=True, blank=True)
    run_p95_ms = models.FloatField(null=True, blank=True)
    run_p99_ms = models.FloatField(null=True, blank=True)
    # attempts per run-time bucket (queueing.counters.RUN_BUCKETS, "inf" last): windows
    # longer than 5 minutes merge these for their percentiles
    run_histogram = models.JSONField(default=dict, blank=True)
    # the attempts' run time added up (ms), for the average the run-time alert checks
    run_ms_total = models.BigIntegerField(default=0, db_default=0)
    # attempts per wait bucket (queueing.counters.WAIT_BUCKETS, enqueue or due time to
    # start, "inf" last): the latency alert's p95 over history and roll-ups alike
    wait_histogram = models.JSONField(default=dict, blank=True, db_default={})
    # Made up by the demo company's seed (queueing/demo.py), not measured;
    # `seed_demo --clear` deletes exactly these.
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["-bucket", "queue"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "bucket"], name="queuestat_one_per_bucket")
        ]
        indexes = [models.Index(fields=["bucket"], name="queuestat_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.queue} @ {self.bucket:%Y-%m-%d %H:%M}"


class DailyReport(models.Model):
    """The daily performance report of one business day (queueing/observe/report.py):
    the numbers as JSON, written once at midnight business time and mailed."""

    day = models.DateField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField()
    emailed_at = models.DateTimeField(null=True, blank=True)
    # The demo company's example report (queueing/demo.py): shown, never
    # used as a real day's numbers in later reports' comparisons.
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"report of {self.day}"

"""Request and response shapes of the queue API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from queueing.contracts import StrictSerializer
from queueing.control.retention import CLEANABLE_STATUSES
from queueing.ledger.enqueue import PRIORITY_MAX, PRIORITY_MIN
from queueing.models import DeadLetter, Job, JobAttempt, JobStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    # The error shape's key is "fields"; DRF's metaclass pops declared fields off the
    # class, so this does not shadow Serializer.fields (the stub cannot know that).
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField())
    )


class ErrorSerializer(serializers.Serializer):
    """Every error response."""

    error = ErrorDetailSerializer()


# --- jobs -------------------------------------------------------------------------------


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "worker",
            "started_at",
            "finished_at",
            "duration_ms",
            "outcome",
            "error_class",
            "error_message",
            "error_kind",
        ]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    task = serializers.CharField(source="task_name", read_only=True)
    enqueued_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "url",
            "task",
            "queue",
            "status",
            "priority",
            "args",
            "kwargs",
            "attempts",
            "max_attempts",
            "progress",
            "progress_message",
            "run_at",
            "enqueued_at",
            "started_at",
            "finished_at",
            "result",
            "last_error_class",
            "last_error_message",
            "unique_key",
            "enqueued_by",
            "origin",
            "replay_of",
        ]
        read_only_fields = fields

    def get_url(self, job: Job) -> str:
        return reverse("queue-api:job-detail", args=[job.id])


class JobDetailSerializer(JobSerializer):
    attempt_history = AttemptSerializer(source="attempt_rows", many=True, read_only=True)
    explain = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "attempt_history", "explain"]
        read_only_fields = fields

    def get_explain(self, job: Job) -> list[dict]:
        """Why the job is not running (queueing/observe/explain.py); [] when it runs or ended."""
        from queueing.observe.explain import explain

        return explain(job)


class JobCreateSerializer(StrictSerializer):
    task = serializers.CharField(max_length=200, help_text="an API-enabled task name")
    args = serializers.JSONField(
        required=False, default=dict, help_text="the task's named arguments (its contract)"
    )
    queue = serializers.ChoiceField(choices=[], required=False)
    priority = serializers.IntegerField(
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        required=False,
        help_text="0 most urgent, 9 least",
    )
    countdown = serializers.FloatField(min_value=0, max_value=366 * 86400, required=False)
    run_at = serializers.DateTimeField(required=False)
    unique_key = serializers.CharField(max_length=255, required=False, allow_blank=False)
    on_conflict = serializers.ChoiceField(choices=["keep", "replace"], default="keep")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(serializers.ChoiceField, self.fields["queue"]).choices = list(settings.TASKYARD_QUEUES)

    def validate(self, data: dict) -> dict:
        if data.get("countdown") is not None and data.get("run_at") is not None:
            raise serializers.ValidationError({"run_at": ["give countdown or run_at, not both"]})
        return data


class CancelSerializer(StrictSerializer):
    terminate = serializers.BooleanField(
        default=False, help_text="also kill a running job's process"
    )
    reason = serializers.CharField(max_length=500, required=False, default="cancelled via API")


class CancelResultSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    status = serializers.CharField()
    outcome = serializers.CharField(help_text="cancelled, requested (running) or already final")


class JobListQuerySerializer(StrictSerializer):
    queue = serializers.ChoiceField(choices=[], required=False)
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    task = serializers.CharField(required=False, max_length=200)
    enqueued_after = serializers.DateTimeField(required=False)
    enqueued_before = serializers.DateTimeField(required=False)
    page = serializers.IntegerField(min_value=1, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An unknown queue is a 400, like an unknown status (not an empty 200).
        cast(serializers.ChoiceField, self.fields["queue"]).choices = list(settings.TASKYARD_QUEUES)


# --- queues -----------------------------------------------------------------------------


class QueueActionSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)


class QueueStateSerializer(serializers.Serializer):
    queue = serializers.CharField()
    paused = serializers.BooleanField()
    reason = serializers.CharField()


class CleanSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=CLEANABLE_STATUSES)
    older_than_seconds = serializers.IntegerField(min_value=0, max_value=10 * 365 * 86400)
    dry_run = serializers.BooleanField(default=False)


class CleanResultSerializer(serializers.Serializer):
    queue = serializers.CharField()
    status = serializers.CharField()
    deleted = serializers.IntegerField()
    dry_run = serializers.BooleanField()


# --- dead letters -----------------------------------------------------------------------


class DeadLetterSerializer(serializers.ModelSerializer):
    task = serializers.CharField(source="job.task_name", read_only=True)
    queue = serializers.CharField(source="job.queue", read_only=True)
    reviewed_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "job",
            "task",
            "queue",
            "reason",
            "error_class",
            "error_message",
            "fingerprint",
            "created_at",
            "reviewed",
            "reviewed_by",
            "reviewed_at",
            "note",
            "discarded_at",
            "replayed_as",
        ]
        read_only_fields = fields


class ReviewSerializer(StrictSerializer):
    note = serializers.CharField(max_length=2000, allow_blank=True, default="")


class BulkReplaySerializer(StrictSerializer):
    fingerprint = serializers.CharField(max_length=64, required=False)
    task = serializers.CharField(max_length=200, required=False)
    queue = serializers.CharField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    dry_run = serializers.BooleanField(
        default=True, help_text="true (the default): only count; false: replay them"
    )


class BulkReplayResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    replayed = serializers.ListField(child=serializers.UUIDField())
    dry_run = serializers.BooleanField()

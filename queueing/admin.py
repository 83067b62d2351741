"""Read-only views of the job ledger. Operator actions (cancel, retry, replay, pause) and
the dashboard come with the monitoring issue; until then the ledger is changed only
through queueing.ledger / queueing.deadletters, never by editing rows by hand."""

from __future__ import annotations

from django.contrib import admin

from queueing.models import DeadLetter, Job, JobAttempt


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "number",
        "outcome",
        "worker",
        "started_at",
        "duration_ms",
        "error_kind",
        "error_class",
        "error_message",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "task_name",
        "queue",
        "status",
        "attempts",
        "max_attempts",
        "enqueued_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "queue", "origin", "task_name")
    search_fields = ("=id", "task_name", "unique_key")
    date_hierarchy = "enqueued_at"
    list_select_related = ("enqueued_by",)
    raw_id_fields = ("enqueued_by", "replay_of")
    inlines = [JobAttemptInline]
    show_full_result_count = False  # COUNT(*) over a large ledger on every page is slow


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ("job", "reason", "error_class", "created_at", "reviewed", "replayed_as")
    list_filter = ("reason", "reviewed", "error_class")
    search_fields = ("=job__id", "error_class", "error_message", "fingerprint")
    list_select_related = ("job", "replayed_as")
    raw_id_fields = ("job", "replayed_as", "reviewed_by")

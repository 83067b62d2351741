"""Admin of the data sync: sources (with CSV upload and run buttons), run history with
each run's record errors, the conflict queue side by side, the record map; and the
inbound webhook events (read-only, with a confirmed "process again" action)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from datasync import engine, services
from datasync.models import (
    ConflictStatus,
    RecordError,
    RecordMap,
    SyncConflict,
    SyncMode,
    SyncRun,
    SyncSource,
    WebhookEvent,
)

# The run page lists at most this many record errors inline.
INLINE_ERRORS = 200
# A field whose two versions differ is highlighted in the conflict's table.
DIFFERS_STYLE = ' style="background:#fff3cd"'
# An uploaded CSV larger than this is refused (it is kept in the database).
CSV_MAX_BYTES = 20 * 1024 * 1024


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "event_type", "event_id", "status", "received_at", "attempts")
    list_filter = ("source", "status", "event_type")
    search_fields = ("event_id", "event_type", "payload_hash")
    date_hierarchy = "received_at"
    readonly_fields = [field.name for field in WebhookEvent._meta.fields]
    actions = ["process_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Process the selected events again (new jobs)")
    def process_again(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        jobs = [services.replay(event) for event in queryset]
        self.message_user(
            request, f"{len(jobs)} event(s) queued for processing again.", messages.SUCCESS
        )


class SyncSourceForm(forms.ModelForm):
    csv_upload = forms.FileField(
        required=False, help_text="CSV sources: a new file replaces the stored one"
    )

    class Meta:
        model = SyncSource
        fields = (
            "name",
            "kind",
            "target",
            "config",
            "field_map",
            "outbound_map",
            "conflict_policy",
            "batch_size",
            "enabled",
            "scheduled",
            "is_demo",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("csv_upload")
        source: SyncSource = self.instance
        for name in ("name", "kind", "target", "config", "field_map", "outbound_map"):
            if name in data:
                setattr(source, name, data[name])
        source.conflict_policy = data.get("conflict_policy", source.conflict_policy)
        if upload is not None:
            if upload.size > CSV_MAX_BYTES:
                self.add_error("csv_upload", f"larger than {CSV_MAX_BYTES} bytes")
            else:
                try:
                    source.csv_content = upload.read().decode("utf-8-sig")
                except UnicodeDecodeError:
                    self.add_error("csv_upload", "not UTF-8 text")
        for field, problems in engine.validate_source(source).items():
            for problem in problems:
                self.add_error(field if field in self.fields else None, problem)
        return data


@admin.register(SyncSource)
class SyncSourceAdmin(admin.ModelAdmin):
    form = SyncSourceForm
    list_display = (
        "name",
        "kind",
        "target",
        "conflict_policy",
        "enabled",
        "scheduled",
        "watermark",
        "open_conflicts",
    )
    list_filter = ("kind", "target", "enabled")
    search_fields = ("name",)
    readonly_fields = ("watermark", "delta_cursor", "created_at")
    actions = ["run_incremental", "run_full", "run_dry"]

    @admin.display(description="open conflicts")
    def open_conflicts(self, source: SyncSource) -> int:
        return source.conflicts.filter(status=ConflictStatus.OPEN).count()

    def _enqueue(self, request: HttpRequest, sources: QuerySet[SyncSource], **options: Any) -> None:
        from datasync.tasks import run_sync

        names = [s.name for s in sources.filter(enabled=True)]
        for name in names:
            run_sync.delay(source=name, **options)
        self.message_user(
            request, f"{len(names)} sync run(s) queued ({options}).", messages.SUCCESS
        )

    @admin.action(description="Sync now: incremental")
    def run_incremental(self, request: HttpRequest, queryset: QuerySet[SyncSource]) -> None:
        self._enqueue(request, queryset, mode=SyncMode.INCREMENTAL)

    @admin.action(description="Sync now: full (detects deletions)")
    def run_full(self, request: HttpRequest, queryset: QuerySet[SyncSource]) -> None:
        self._enqueue(request, queryset, mode=SyncMode.FULL)

    @admin.action(description="Dry run: full, writes nothing")
    def run_dry(self, request: HttpRequest, queryset: QuerySet[SyncSource]) -> None:
        self._enqueue(request, queryset, mode=SyncMode.FULL, dry_run=True)


class RecordErrorInline(admin.TabularInline):
    model = RecordError
    fields = ("external_id", "reason", "values")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[RecordError]:
        ids = list(super().get_queryset(request).values_list("id", flat=True)[:INLINE_ERRORS])
        return RecordError.objects.filter(id__in=ids)


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "mode",
        "dry_run",
        "status",
        "started_at",
        "finished_at",
        *SyncRun.COUNTS,
    )
    list_filter = ("status", "mode", "source")
    list_select_related = ("source",)
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in SyncRun._meta.fields]
    inlines = [RecordErrorInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SyncConflict)
class SyncConflictAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "external_id", "status", "detected_at", "resolved_by")
    list_filter = ("status", "source")
    list_select_related = ("source", "record")
    search_fields = ("record__external_id", "record__natural_key")
    raw_id_fields = ("record", "run")
    readonly_fields = (
        "source",
        "record",
        "run",
        "status",
        "side_by_side",
        "detected_at",
        "resolved_at",
        "resolved_by",
    )
    exclude = ("source_values", "local_values", "source_hash")
    actions = ["keep_source", "keep_local"]

    @admin.display(description="external id")
    def external_id(self, conflict: SyncConflict) -> str:
        return conflict.record.external_id

    @admin.display(description="both versions")
    def side_by_side(self, conflict: SyncConflict) -> str:
        names = sorted({*conflict.source_values, *conflict.local_values})
        rows = format_html_join(
            "",
            "<tr{}><th>{}</th><td>{}</td><td>{}</td></tr>",
            (
                (
                    mark_safe(DIFFERS_STYLE)  # noqa: S308 - a constant
                    if conflict.source_values.get(n) != conflict.local_values.get(n)
                    else "",
                    n,
                    conflict.source_values.get(n),
                    conflict.local_values.get(n),
                )
                for n in names
            ),
        )
        return format_html(
            "<table><tr><th>field</th><th>source</th><th>ours</th></tr>{}</table>", rows
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _resolve(self, request: HttpRequest, queryset: QuerySet[SyncConflict], keep: str) -> None:
        user = getattr(request.user, "username", "")
        done = 0
        for conflict in queryset.filter(status=ConflictStatus.OPEN):
            try:
                engine.resolve(conflict, keep, user)
            except engine.SyncError as exc:  # ours may not change any more: left open
                self.message_user(request, f"conflict {conflict.id}: {exc}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"{done} conflict(s) resolved: {keep} kept.", messages.SUCCESS)

    @admin.action(description="Resolve: keep the source's version (writes it to our row)")
    def keep_source(self, request: HttpRequest, queryset: QuerySet[SyncConflict]) -> None:
        self._resolve(request, queryset, "source")

    @admin.action(description="Resolve: keep our version")
    def keep_local(self, request: HttpRequest, queryset: QuerySet[SyncConflict]) -> None:
        self._resolve(request, queryset, "local")


@admin.register(RecordMap)
class RecordMapAdmin(admin.ModelAdmin):
    list_display = (
        "external_id",
        "source",
        "natural_key",
        "local_id",
        "synced_at",
        "deleted_at",
        "writes",
    )
    list_filter = ("source",)
    list_select_related = ("source",)
    search_fields = ("external_id", "natural_key")
    readonly_fields = [field.name for field in RecordMap._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

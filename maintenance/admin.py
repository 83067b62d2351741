"""Maintenance's admin: the backup catalogue (with "verify now") and upkeep runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from maintenance.models import Backup, BackupStatus, UpkeepRun
from maintenance.tasks import verify_backup


def human_size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _readonly(model: Any) -> list[str]:
    return [field.name for field in model._meta.fields]


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = (
        "file",
        "vendor",
        "trigger",
        "created_at",
        "size",
        "status",
        "verified_at",
        "result",
    )
    list_filter = ("status", "vendor", "trigger")
    search_fields = ("path", "sha256", "error")
    date_hierarchy = "created_at"
    readonly_fields = [*_readonly(Backup), "size", "verification_table"]
    exclude = ("verification", "row_counts")
    actions = ["verify_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="file", ordering="path")
    def file(self, obj: Backup) -> str:
        return Path(obj.path).name

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: Backup) -> str:
        return human_size(obj.size_bytes)

    @admin.display(description="result")
    def result(self, obj: Backup) -> str:
        if obj.error:
            return obj.error[:120]
        if obj.status == BackupStatus.VERIFIED:
            tables = obj.verification.get("tables", {})
            return f"{len(tables)} tables, {sum(tables.values())} rows restored"
        return "-"

    @admin.display(description="rows per table (at backup / restored)")
    def verification_table(self, obj: Backup) -> str:
        restored = obj.verification.get("tables", {}) if obj.verification else {}
        rows = [
            (table, count, restored.get(table, "-"), "" if restored.get(table) == count else "≠")
            for table, count in sorted(obj.row_counts.items())
        ]
        return format_html(
            "<table><tr><th>table</th><th>at backup</th><th>restored</th><th></th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.action(description="Verify now (restore into a scratch database, compare counts)")
    def verify_now(self, request: HttpRequest, queryset: QuerySet[Backup]) -> None:
        chosen = list(queryset.exclude(status=BackupStatus.RUNNING).values_list("pk", flat=True))
        for backup_id in chosen:
            verify_backup.delay(backup_id=backup_id)
        self.message_user(
            request,
            f"{len(chosen)} backup(s) queued for verification on the maintenance queue.",
            messages.SUCCESS,
        )


@admin.register(UpkeepRun)
class UpkeepRunAdmin(admin.ModelAdmin):
    list_display = ("ran_at", "vendor", "duration_ms", "maintained_tables", "largest_table")
    list_filter = ("vendor",)
    date_hierarchy = "ran_at"
    readonly_fields = [*_readonly(UpkeepRun), "table_report"]
    exclude = ("tables",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="maintained")
    def maintained_tables(self, obj: UpkeepRun) -> str:
        return ", ".join(obj.maintained)

    @admin.display(description="largest table")
    def largest_table(self, obj: UpkeepRun) -> str:
        if not obj.tables:
            return "-"
        top = obj.tables[0]
        return f"{top['table']} ({human_size(top.get('total_bytes'))})"

    @admin.display(description="tables (largest first)")
    def table_report(self, obj: UpkeepRun) -> str:
        rows = [
            (
                row["table"],
                row.get("rows", "-"),
                row.get("dead_rows", "-"),
                f"{row['dead_ratio']:.1%}" if "dead_ratio" in row else "-",
                human_size(row.get("total_bytes")),
                human_size(row.get("bloat_bytes", row.get("unused_bytes"))),
                row.get("last_vacuum") or "-",
            )
            for row in obj.tables
        ]
        return format_html(
            "<table><tr><th>table</th><th>rows</th><th>dead rows</th><th>dead %</th>"
            "<th>size</th><th>bloat / unused</th><th>last vacuum</th></tr>{}</table>",
            format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows),
        )

"""Maintenance's admin: the backup catalogue (with "verify now"), upkeep runs, and "run
now" for the maintenance jobs ("Back up now", "Run upkeep now"; queueing's admin has
"Rebuild report"): each asks for confirmation, needs the right to enqueue the job
(admins: the jobs declare roles=()), and writes the same audit event as the API's
enqueue."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from maintenance.backups import operations
from maintenance.models import Backup, BackupStatus, UpkeepRun
from maintenance.tasks import backup_database, database_upkeep, verify_backup
from queueing import audit_enqueued, enqueue, may_enqueue, record_request, validate_arguments

# "Run now": what the confirmation page says the job does, and where to go afterwards.
RUN_NOW = {
    "backup": (
        backup_database,
        "back up the database now, verify the file by restoring it into a scratch "
        "database, then rotate old backups",
        "admin:maintenance_backup_changelist",
    ),
    "upkeep": (
        database_upkeep,
        "run database upkeep now: VACUUM (ANALYZE) of the ledger's tables on PostgreSQL, "
        "ANALYZE and PRAGMA optimize on SQLite",
        "admin:maintenance_upkeeprun_changelist",
    ),
}


def run_now(request: HttpRequest, what: str, site: admin.AdminSite) -> HttpResponse:
    """GET: the confirmation page; POST with confirm=yes: enqueue the job for the user
    (the API's rule, may_enqueue: admins), audited like the API's enqueue, then back to
    its list."""
    if what not in RUN_NOW:
        raise Http404(f"no maintenance job {what!r}")
    task, description, back = RUN_NOW[what]
    if not may_enqueue(request.user, task):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        with transaction.atomic():
            new_id = uuid.uuid4()
            job = enqueue(task, (), validate_arguments(task, {}), user=request.user, job_id=new_id)
            if job.id == new_id:
                audit_enqueued(request, job, "via admin")
        if job.id == new_id:
            messages.success(request, f"Queued {task.name} on {job.queue} (job {job.id}).")
        else:
            messages.info(
                request, f"Nothing added: {task.name} is already waiting or running (job {job.id})."
            )
        return HttpResponseRedirect(reverse(back))
    context = {
        **site.each_context(request),
        "title": f"Confirm: {description.split(',')[0].split(':')[0]}",
        "description": description,
        "back": reverse(back),
    }
    return TemplateResponse(request, "admin/queueing/run_now.html", context)


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

    def has_delete_permission(self, request: HttpRequest, obj: Backup | None = None) -> bool:
        # A backup being written is the job's: its row and file go when it ends.
        if obj is not None and obj.status == BackupStatus.RUNNING:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Backup) -> None:
        """The row with its file and manifest (the confirmation page says so): a row
        deleted alone would leave a file no rotation ever removes."""
        self.delete_queryset(request, Backup.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Backup]) -> None:
        for backup in queryset.exclude(status=BackupStatus.RUNNING):
            with transaction.atomic():
                files = operations.delete_backup(backup)
                record_request(
                    request,
                    "backup.delete",
                    ("backup", backup.pk),
                    before={"path": backup.path, "status": backup.status},
                    after={"files_deleted": files},
                    reason="via admin",
                )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "run/<str:what>/",
                self.admin_site.admin_view(self.run_now_view),
                name="maintenance_run_now",
            )
        ]
        return own + super().get_urls()

    def run_now_view(self, request: HttpRequest, what: str) -> HttpResponse:
        return run_now(request, what, self.admin_site)

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

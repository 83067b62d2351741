"""Maintenance's admin: the backup catalogue (with "verify now"), upkeep runs, and "run
now" for the maintenance jobs ("Back up now", "Run upkeep now", "Rebuild report"): each
asks for confirmation, needs the right to enqueue the job (admins: the jobs declare
roles=()), and writes the same audit event as the API's enqueue."""

from __future__ import annotations

import datetime as dt
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
from rest_framework import serializers

from maintenance.backups import operations
from maintenance.models import Backup, BackupStatus, UpkeepRun
from maintenance.tasks import verify_backup
from queueing import audit
from queueing.api.contracts import api_tasks, validate_arguments
from queueing.ledger.enqueue import enqueue
from queueing.observe.report import business_today
from queueing.roles import may_enqueue_task

# "Run now": (task, what the confirmation page says it does, where to go afterwards).
RUN_NOW = {
    "backup": (
        "maintenance.backup_database",
        "back up the database now, verify the file by restoring it into a scratch "
        "database, then rotate old backups",
        "admin:maintenance_backup_changelist",
    ),
    "upkeep": (
        "maintenance.database_upkeep",
        "run database upkeep now: VACUUM (ANALYZE) of the ledger's tables on PostgreSQL, "
        "ANALYZE and PRAGMA optimize on SQLite",
        "admin:maintenance_upkeeprun_changelist",
    ),
    "report": (
        "queueing.daily_report",
        "rebuild the daily report of this day from the ledger: it replaces the stored "
        "one and is mailed to the operators",
        "queueing-reports",
    ),
}


def run_now(request: HttpRequest, what: str, site: admin.AdminSite) -> HttpResponse:
    """GET: the confirmation page; POST with confirm=yes: enqueue the job for the user,
    audited, then back to its list. Arguments are checked by the job's API contract."""
    if what not in RUN_NOW:
        raise Http404(f"no maintenance job {what!r}")
    name, description, back = RUN_NOW[what]
    task = api_tasks()[name]
    if not may_enqueue_task(request.user, task, getattr(task, "declared_queue", "")):
        raise PermissionDenied
    data = {}
    if what == "report":
        yesterday = business_today() - dt.timedelta(days=1)
        data["day"] = request.POST.get("day") or request.GET.get("day") or yesterday.isoformat()
    errors: list[str] = []
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            kwargs = validate_arguments(task, data, field=None)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
            errors = [f"{key}: {message}" for key, values in detail.items() for message in values]
        else:
            _enqueue(request, task, kwargs, site)
            return HttpResponseRedirect(reverse(back))
    context = {
        **site.each_context(request),
        "title": f"Confirm: {description.split(':')[0]}",
        "description": description,
        "day": data.get("day"),
        "errors": errors,
        "back": reverse(back),
    }
    return TemplateResponse(request, "admin/maintenance/run_now.html", context)


def _enqueue(request: HttpRequest, task: Any, kwargs: dict[str, Any], site: Any) -> None:
    new_id = uuid.uuid4()
    with transaction.atomic():
        job = enqueue(task, (), kwargs, user=request.user, job_id=new_id)
        if job.id == new_id:
            audit.record_request(
                request,
                "job.create",
                ("job", job.id),
                after={"status": job.status, "task": task.name, "kwargs": kwargs},
                reason="via admin",
            )
    if job.id == new_id:
        text = f"Queued {task.name} on {job.queue} (job {job.id})."
    else:
        text = f"Nothing added: {task.name} is already waiting or running (job {job.id})."
    messages.add_message(request, messages.SUCCESS if job.id == new_id else messages.INFO, text)


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
                audit.record_request(
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

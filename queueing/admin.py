"""The operator console: the ledger read-only, changed only through actions that call the
same functions as the API (queueing.control.operations, queueing.ledger.deadletters,
queueing.control.pause) and write the same audit events. Actions that cannot be undone
ask for confirmation first. The dashboard is queueing/observe/dashboard.py."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_celery_results.admin import TaskResultAdmin
from django_celery_results.models import TaskResult

from queueing import audit
from queueing.control.operations import RetryRefused, cancel, retry
from queueing.control.pause import pause_queue, resume_queue
from queueing.ledger.deadletters import DeadLetterError, discard, mark_reviewed, replay
from queueing.ledger.enqueue import enqueue, resolve_queue, resolve_task
from queueing.models import (
    Alert,
    AuditEvent,
    DailyReport,
    DeadLetter,
    Job,
    JobAttempt,
    JobStatus,
    QueueStat,
    QueueState,
)
from queueing.observe import alert_actions, stats
from queueing.roles import may_enqueue_task


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def record(request, action: str, target: tuple[str, object], **fields) -> None:
    audit.record_request(request, action, target, reason="via admin", **fields)


def may_enqueue(user: Any, task: Any) -> bool:
    """May ``user`` create a job of ``task`` on its own queue: the API's rule (the task's
    declared roles, else the queue's enqueue permission, or enqueue_any). A domain app's
    admin action that starts jobs offers itself only to these users."""
    return may_enqueue_task(user, task, resolve_queue(task, None, [], {}))


def audit_enqueued(request: HttpRequest, job: Job, reason: str) -> None:
    """The audit event of a job an operator created from the admin ("job.create", as the
    API writes): call it in the transaction that inserted the job."""
    audit.record_request(
        request,
        "job.create",
        ("job", job.id),
        after={"status": job.status, "attempts": job.attempts, "run_at": job.run_at},
        reason=reason,
    )


def confirmed(modeladmin, request, queryset, action: str, description: str, *, note=False):
    """None once the operator confirmed (POST with ``confirm``); else the page asking
    (with a note field when ``note``: the answer is in ``request.POST["note"]``)."""
    if request.POST.get("confirm") == "yes":
        return None
    context = {
        "note_field": note,
        **modeladmin.admin_site.each_context(request),
        "title": f"Confirm: {description}",
        "description": description,
        "objects": list(queryset[:200]),
        "count": queryset.count(),
        "action": action,
        "ids": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/queueing/confirm_action.html", context)


confirm_action = confirmed  # its public name (queueing.confirm_action)


# --- jobs -------------------------------------------------------------------------------


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

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "task_name",
        "queue",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "enqueued_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "queue", "origin", "task_name", "enqueued_at")
    search_fields = ("=id", "task_name", "unique_key")
    date_hierarchy = "enqueued_at"
    list_select_related = ("enqueued_by",)
    raw_id_fields = ("enqueued_by", "replay_of")
    inlines = [JobAttemptInline]
    show_full_result_count = False  # COUNT(*) over a large ledger on every page is slow
    actions = ["cancel_jobs", "retry_jobs"]

    def has_operate_permission(self, request) -> bool:
        """Cancelling and retrying jobs: the API's operators (admin role), not every
        staff user who may look at the ledger."""
        return request.user.has_perm("queueing.operate_queues")

    @admin.action(
        description="Cancel selected jobs (waiting: for good; running: ask to stop)",
        permissions=["operate"],
    )
    def cancel_jobs(self, request, queryset):
        page = confirmed(
            self, request, queryset, "cancel_jobs", "cancel these jobs; a cancelled job never runs"
        )
        if page:
            return page
        done = 0
        for job in queryset:
            with transaction.atomic():
                result = cancel(job.id, reason=f"cancelled in the admin by {request.user}")
                if result.outcome != "already final":
                    record(
                        request,
                        "job.cancel",
                        ("job", job.id),
                        before={"status": job.status},
                        after={"status": result.status, "outcome": result.outcome},
                    )
                    done += 1
        self.message_user(
            request,
            f"{done} job(s) cancelled or asked to stop; "
            f"{queryset.count() - done} had already ended.",
        )
        return None

    @admin.action(
        description="Retry selected jobs (run now, replay dead, re-enqueue cancelled)",
        permissions=["operate"],
    )
    def retry_jobs(self, request, queryset):
        retried = skipped = 0
        for job in queryset:
            with transaction.atomic():
                try:
                    new_id = retry(job.id, user=request.user).id
                except RetryRefused:
                    skipped += 1
                    continue
                record(
                    request,
                    "job.retry",
                    ("job", job.id),
                    before={"status": job.status},
                    after={"job": str(new_id)},
                )
                retried += 1
        self.message_user(
            request,
            f"{retried} job(s) retried; {skipped} skipped "
            "(running, queued, succeeded or already replayed).",
        )


# --- dead letters -----------------------------------------------------------------------


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = (
        "job",
        "task",
        "queue",
        "reason",
        "error_class",
        "same_cause",
        "created_at",
        "reviewed",
        "replayed_as",
        "discarded_at",
    )
    list_filter = ("reason", "reviewed", "error_class", "job__queue", "job__task_name")
    search_fields = ("=job__id", "error_class", "error_message", "=fingerprint")
    list_select_related = ("job", "replayed_as")
    raw_id_fields = ("job", "replayed_as", "reviewed_by")
    ordering = ("-created_at",)
    actions = ["review_letters", "replay_letters", "discard_letters"]

    def get_queryset(self, request):
        # Grouped by cause: how many dead letters share this one's fingerprint.
        same = (
            DeadLetter.objects.filter(fingerprint=OuterRef("fingerprint"))
            .values("fingerprint")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(same_cause_count=Subquery(same))

    @admin.display(description="same cause", ordering="same_cause_count")
    def same_cause(self, letter) -> str:
        return f"{letter.same_cause_count} x {letter.fingerprint[:8]}"

    @admin.display(description="task", ordering="job__task_name")
    def task(self, letter) -> str:
        return letter.job.task_name

    @admin.display(description="queue", ordering="job__queue")
    def queue(self, letter) -> str:
        return letter.job.queue

    def has_manage_permission(self, request) -> bool:
        return request.user.has_perm("queueing.manage_dead_letters")

    @admin.action(description="Mark selected as reviewed", permissions=["manage"])
    def review_letters(self, request, queryset):
        for letter in queryset:
            with transaction.atomic():
                mark_reviewed(letter.id, user=request.user)
                record(
                    request,
                    "dead_letter.review",
                    ("dead_letter", letter.id),
                    before={"reviewed": letter.reviewed},
                    after={"reviewed": True},
                )
        self.message_user(request, f"{queryset.count()} dead letter(s) marked reviewed.")

    @admin.action(
        description="Replay selected (enqueue the same work again)", permissions=["manage"]
    )
    def replay_letters(self, request, queryset):
        page = confirmed(
            self,
            request,
            queryset,
            "replay_letters",
            "run these dead jobs again with the same arguments",
        )
        if page:
            return page
        replayed = 0
        for letter in queryset:
            try:
                with transaction.atomic():
                    job = replay(letter.id, user=request.user)
                    record(
                        request,
                        "dead_letter.replay",
                        ("dead_letter", letter.id),
                        after={"replayed_as": str(job.id)},
                    )
                replayed += 1
            except DeadLetterError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"{replayed} dead letter(s) replayed.")
        return None

    @admin.action(
        description="Discard selected (keep the record, never replay)", permissions=["manage"]
    )
    def discard_letters(self, request, queryset):
        page = confirmed(
            self,
            request,
            queryset,
            "discard_letters",
            "discard these dead letters: no replay afterwards",
        )
        if page:
            return page
        for letter in queryset:
            with transaction.atomic():
                discard(letter.id, user=request.user)
                record(
                    request,
                    "dead_letter.discard",
                    ("dead_letter", letter.id),
                    after={"discarded": True},
                )
        self.message_user(request, f"{queryset.count()} dead letter(s) discarded.")
        return None


# --- queues -----------------------------------------------------------------------------


@admin.register(QueueState)
class QueueAdmin(ReadOnlyAdmin):
    """Every declared queue, with live counts; a Pause/Resume button per row (and the same
    as bulk actions), each confirmed on a page of its own before anything changes."""

    list_display = (
        "name",
        "state",
        "button",
        "waiting",
        "running",
        "scheduled",
        "retrying",
        "dead",
        "workers",
        "reason",
        "changed_by",
        "changed_at",
    )
    actions = ["pause_queues", "resume_queues"]
    ordering = ("name",)
    # The counts of the page being rendered: per thread, as one admin instance serves all.
    _page = threading.local()

    def changelist_view(self, request, extra_context=None):
        # One row per declared queue, even one never paused.
        for name in settings.TASKYARD_QUEUES:
            QueueState.objects.get_or_create(name=name)
        self._page.overview = {q["queue"]: q for q in stats.queue_overview()}
        try:
            from queueing.registry import workers_per_queue

            self._page.workers = workers_per_queue()
        except Exception:
            self._page.workers = {}
        self._page.may_operate = self.has_operate_permission(request)
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        own = [
            path(
                "<int:state_id>/<str:verb>/",
                self.admin_site.admin_view(self.button_view),
                name="queueing_queuestate_button",
            ),
        ]
        return own + super().get_urls()

    @admin.display(description="")
    def button(self, queue) -> str:
        if not getattr(self._page, "may_operate", False):
            return ""
        verb = "resume" if queue.paused else "pause"
        url = reverse("admin:queueing_queuestate_button", args=[queue.id, verb])
        return format_html('<a class="button" href="{}">{}</a>', url, verb.capitalize())

    def button_view(self, request, state_id: int, verb: str):
        """GET: the confirmation page; POST with confirm=yes: pause or resume."""
        if verb not in ("pause", "resume"):
            raise Http404(f"no queue operation {verb!r}")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        queryset = QueueState.objects.filter(id=state_id)
        if not queryset.exists():
            raise Http404("no such queue")
        action = f"{verb}_queues"
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            return confirmed(
                self,
                request,
                queryset,
                action,
                f"{verb} this queue"
                + (": no job of it starts until resumed" if verb == "pause" else ""),
            )
        self._set(request, queryset, verb == "pause")
        return HttpResponseRedirect(reverse("admin:queueing_queuestate_changelist"))

    def get_queryset(self, request):
        return super().get_queryset(request).filter(name__in=list(settings.TASKYARD_QUEUES))

    def _count(self, state, status: str) -> int:
        overview = getattr(self._page, "overview", {})
        return overview.get(state.name, {}).get("counts", {}).get(status, 0)

    @admin.display(description="state")
    def state(self, queue) -> str:
        return "PAUSED" if queue.paused else "running"

    @admin.display(description="waiting")
    def waiting(self, queue) -> int:
        return self._count(queue, JobStatus.QUEUED)

    @admin.display(description="running")
    def running(self, queue) -> int:
        return self._count(queue, JobStatus.RUNNING)

    @admin.display(description="scheduled")
    def scheduled(self, queue) -> int:
        return self._count(queue, JobStatus.SCHEDULED)

    @admin.display(description="retrying")
    def retrying(self, queue) -> int:
        return self._count(queue, JobStatus.RETRYING)

    @admin.display(description="dead")
    def dead(self, queue) -> int:
        return self._count(queue, JobStatus.DEAD)

    @admin.display(description="workers")
    def workers(self, queue) -> int:
        return len(getattr(self._page, "workers", {}).get(queue.name, []))

    def _set(self, request, queryset, paused: bool):
        change = pause_queue if paused else resume_queue
        for queue in queryset:
            with transaction.atomic():
                state = change(queue.name, user=request.user, reason="via admin")
                record(
                    request,
                    "queue.pause" if paused else "queue.resume",
                    ("queue", queue.name),
                    before={"paused": queue.paused},
                    after={"paused": state.paused},
                )
        verb = "paused" if paused else "resumed"
        self.message_user(request, f"{queryset.count()} queue(s) {verb}.")

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("queueing.operate_queues")

    @admin.action(
        description="Pause selected queues (workers stop taking their jobs)",
        permissions=["operate"],
    )
    def pause_queues(self, request, queryset):
        page = confirmed(
            self,
            request,
            queryset,
            "pause_queues",
            "pause these queues: no job of theirs starts until resumed",
        )
        if page:
            return page
        self._set(request, queryset, True)
        return None

    @admin.action(description="Resume selected queues", permissions=["operate"])
    def resume_queues(self, request, queryset):
        self._set(request, queryset, False)


# --- audit, alerts, results -------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "at",
        "actor_name",
        "role",
        "ip",
        "action",
        "target_type",
        "target_id",
        "reason",
    )
    list_filter = ("action", "target_type", "role")
    search_fields = ("=target_id", "actor_name", "action")
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "key",
        "severity",
        "status",
        "message",
        "value",
        "threshold",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "answer",
    )
    list_filter = ("status", "severity", "kind", "queue")
    search_fields = ("key", "message")
    actions = ("acknowledge_alerts", "snooze_hour", "snooze_day", "unacknowledge_alerts")

    @admin.display(description="operator's answer")
    def answer(self, alert: Alert) -> str:
        parts = []
        if alert.acknowledged_at:
            who = alert.acknowledged_by.username if alert.acknowledged_by else "someone"
            parts.append(f"acknowledged by {who}")
        if alert.snoozed_until and alert.snoozed_until > timezone.now():
            parts.append(f"snoozed until {timezone.localtime(alert.snoozed_until):%H:%M %d %b}")
        if alert.note:
            parts.append(f"“{alert.note[:80]}”")
        return "; ".join(parts) or "-"

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("queueing.operate_queues")

    def _answer(self, request, queryset, action: str, apply) -> None:
        done, refused = 0, []
        for alert in queryset:
            try:
                with transaction.atomic():
                    changed, before = apply(alert.id)
                    record(
                        request,
                        f"alert.{action}",
                        ("alert", alert.id),
                        before=before,
                        after=alert_actions.state_of(changed),
                    )
                done += 1
            except alert_actions.AlertActionError as exc:
                refused.append(str(exc))
        self.message_user(request, f"{done} alert(s): {action} done.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    def _ask_then(self, request, queryset, action, description, apply):
        page = confirmed(self, request, queryset, action, description, note=True)
        if page:
            return page
        note = request.POST.get("note", "")[:2000]
        self._answer(request, queryset, action.removesuffix("_alerts"), lambda pk: apply(pk, note))
        return None

    @admin.action(description="Acknowledge selected (someone is on it)", permissions=["operate"])
    def acknowledge_alerts(self, request, queryset):
        return self._ask_then(
            request,
            queryset,
            "acknowledge_alerts",
            "acknowledge these alerts: no more notifications unless they get worse",
            lambda pk, note: alert_actions.acknowledge(pk, user=request.user, note=note),
        )

    @admin.action(description="Snooze selected for an hour", permissions=["operate"])
    def snooze_hour(self, request, queryset):
        return self._ask_then(
            request,
            queryset,
            "snooze_hour",
            "snooze these alerts for an hour",
            lambda pk, note: alert_actions.snooze(pk, user=request.user, minutes=60, note=note),
        )

    @admin.action(description="Snooze selected for a day", permissions=["operate"])
    def snooze_day(self, request, queryset):
        return self._ask_then(
            request,
            queryset,
            "snooze_day",
            "snooze these alerts for 24 hours",
            lambda pk, note: alert_actions.snooze(pk, user=request.user, minutes=1440, note=note),
        )

    @admin.action(description="Take back acknowledgement and snooze", permissions=["operate"])
    def unacknowledge_alerts(self, request, queryset):
        self._answer(
            request,
            queryset,
            "unacknowledge",
            lambda pk: alert_actions.unacknowledge(pk, user=request.user),
        )


class ReadOnlyTaskResultAdmin(TaskResultAdmin):
    """Results are written by workers only; the ledger (jobs) is where to act."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


admin.site.unregister(TaskResult)
admin.site.register(TaskResult, ReadOnlyTaskResultAdmin)


# --- history (queueing/observe/history.py, report.py) --------------------------------


@admin.register(QueueStat)
class QueueStatAdmin(ReadOnlyAdmin):
    list_display = (
        *("bucket", "queue", "queued", "running", "succeeded", "failed", "died"),
        *("failure_rate", "run_p95_ms", "wait_p95_ms", "oldest_waiting_seconds"),
    )
    list_filter = ("queue",)
    date_hierarchy = "bucket"


@admin.register(DailyReport)
class DailyReportAdmin(ReadOnlyAdmin):
    list_display = ("day", "page", "is_demo", "created_at", "emailed_at")
    exclude = ("data",)

    def get_urls(self):
        own = [
            path(
                "rebuild/",
                self.admin_site.admin_view(self.rebuild_view),
                name="queueing_dailyreport_rebuild",
            )
        ]
        return own + super().get_urls()

    def rebuild_view(self, request):
        """ "Rebuild report": GET asks (with the day, yesterday by default); POST with
        confirm=yes enqueues queueing.daily_report(day) for the user, audited as the API's
        enqueue. Who may: the API's rule for the task (admins: roles=()). A day that has
        not ended or that the ledger no longer holds whole is refused on the page."""
        from queueing.observe.report import ReportUnavailable, business_today, check_buildable

        task = resolve_task("queueing.daily_report")
        if not may_enqueue(request.user, task):
            raise PermissionDenied
        default = (business_today() - dt.timedelta(days=1)).isoformat()
        day = request.POST.get("day") or request.GET.get("day") or default
        errors = []
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                check_buildable(dt.date.fromisoformat(day))
            except ValueError as exc:  # ReportUnavailable, or not a date
                errors.append(str(exc) if isinstance(exc, ReportUnavailable) else "not a date")
            else:
                with transaction.atomic():
                    job = enqueue(task, (), {"day": day}, user=request.user)
                    audit_enqueued(request, job, "via admin")
                messages.success(request, f"Queued the report of {day} (job {job.id}).")
                return HttpResponseRedirect(reverse("queueing-reports"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: rebuild a daily report",
            "description": "rebuild the daily report of this day from the ledger: it "
            "replaces the stored one and is mailed to the operators",
            "day": day,
            "errors": errors,
            "back": reverse("queueing-reports"),
        }
        return TemplateResponse(request, "admin/queueing/run_now.html", context)

    @admin.display(description="report")
    def page(self, report) -> str:
        url = reverse("queueing-report", args=[report.day.isoformat()])
        return format_html('<a href="{}">open the report</a>', url)

"""Admin of notifications: recipients with their preferences, kinds and versioned
templates (with a preview on sample data), the delivery log, suppressions, webhook
endpoints, bookings with their reminders, and the development Outbox (outbox.py).

Bookings change only through notifications.reminders (a move moves the reminders, a
cancel cancels them). Actions that start jobs or cancel (send a kind to recipients,
resend failed messages, cancel bookings) ask for confirmation, need their permission,
write an entry in each object's admin history (LogEntry), and audit each job they create
(queueing.audit_enqueued, the API's "job.create" event)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

import queueing
from notifications import outbox, reminders, rendering, services
from notifications.models import (
    Batch,
    Booking,
    BookingStatus,
    Channel,
    Message,
    MessageKind,
    MessageStatus,
    Preference,
    PushSubscription,
    Recipient,
    Reminder,
    Suppression,
    Template,
    WebhookEndpoint,
)


class PreferenceInline(admin.TabularInline):
    model = Preference
    extra = 0


class PushSubscriptionInline(admin.TabularInline):
    """A browser's subscription: without both keys a push cannot be encrypted for it."""

    model = PushSubscription
    extra = 0
    fields = ("endpoint", "p256dh", "auth", "active", "created_at")
    readonly_fields = ("created_at",)


def may_send(request: HttpRequest) -> bool:
    """Who may start notification jobs from the admin: as over the API (send_batch's
    roles, or enqueue_any)."""
    from notifications.tasks import send_batch

    return queueing.may_enqueue(request.user, send_batch)


def log_each(request: HttpRequest, queryset: QuerySet[Any], message: str) -> None:
    """One entry in each object's admin history (who, when, what)."""
    user_id = cast(int, request.user.pk)  # admin views run for a logged-in staff user
    LogEntry.objects.log_actions(
        user_id=user_id, queryset=queryset, action_flag=CHANGE, change_message=message
    )


class SendKindForm(forms.Form):
    """What "Send a message kind" asks: the kind, a channel, the context."""

    kind = forms.ModelChoiceField(MessageKind.objects.all(), to_field_name="name")
    channel = forms.ChoiceField(
        choices=[("", "every channel the recipient can and wants"), *Channel.choices],
        required=False,
    )
    context = forms.JSONField(
        initial=dict,
        required=False,
        help_text="a JSON object with the kind's variables (customer, email, phone come "
        "from each recipient)",
    )
    urgent = forms.BooleanField(required=False, help_text="ignore quiet hours")


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ("ref", "name", "kind", "email", "phone", "locale", "quiet_start", "quiet_end")
    list_filter = ("kind", "locale")
    search_fields = ("ref", "name", "email", "phone")
    raw_id_fields = ("user",)
    inlines = [PreferenceInline, PushSubscriptionInline]
    actions = ["send_kind"]

    def has_send_permission(self, request: HttpRequest) -> bool:
        return may_send(request)

    @admin.action(
        description="Send a message kind to the selected recipients (a batch job)",
        permissions=["send"],
    )
    def send_kind(self, request: HttpRequest, queryset: QuerySet[Recipient]) -> HttpResponse | None:
        from notifications.tasks import SendNotificationsArgs

        refs = list(queryset.order_by("id").values_list("ref", flat=True))
        form = SendKindForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            arguments = {
                "kind": data["kind"].name,
                "recipients": refs,
                "context": data["context"] or {},
                "urgent": data["urgent"],
            }
            if data["channel"]:
                arguments["channel"] = data["channel"]
            contract = SendNotificationsArgs(data=arguments)
            if contract.is_valid():
                with transaction.atomic():
                    job = queueing.enqueue(
                        "notifications.send_batch", kwargs=arguments, user=request.user
                    )
                    log_each(
                        request,
                        queryset,
                        f"sent {arguments['kind']} (batch job {job.id}, {len(refs)} recipient(s))",
                    )
                    queueing.audit_enqueued(
                        request, job, f"via admin: send {arguments['kind']} to {len(refs)}"
                    )
                self.message_user(
                    request,
                    f"{arguments['kind']} queued for {len(refs)} recipient(s): job {job.id}.",
                    messages.SUCCESS,
                )
                return None
            for field, problems in contract.errors.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, str(problem))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Send a message kind to {len(refs)} recipient(s)",
            "form": form,
            "objects": list(queryset[:200]),
            "count": len(refs),
            "ids": [str(pk) for pk in queryset.values_list("pk", flat=True)],
            "action": "send_kind",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/notifications/send_kind.html", context)


@admin.register(MessageKind)
class MessageKindAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "variables")


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Saving a change adds a new version; the versions sent stay as they were."""

    list_display = ("kind", "channel", "locale", "version", "subject", "created_at")
    list_filter = ("kind", "channel", "locale")
    list_select_related = ("kind",)
    readonly_fields = ("version", "created_at", "preview")
    fields = ("kind", "channel", "locale", "subject", "body", "version", "created_at", "preview")

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        latest = Template.objects.filter(
            kind=obj.kind, channel=obj.channel, locale=obj.locale
        ).aggregate(top=Max("version"))["top"]
        obj.pk = None
        obj._state.adding = True
        obj.version = (latest or 0) + 1
        super().save_model(request, obj, form, change)
        self.message_user(request, f"Saved as version {obj.version}.", messages.SUCCESS)

    @admin.display(description="Preview (sample data)")
    def preview(self, obj: Template) -> str:
        if obj.pk is None:
            return "Save to preview."
        context = {
            **obj.kind.sample,
            "recipient_name": obj.kind.sample.get("customer", "Sample Recipient"),
            "unsubscribe_url": "https://example.com/unsubscribe/sample",
        }
        try:
            subject = rendering.render(obj.subject, context)
            body = rendering.render(obj.body, context)
        except Exception as exc:
            return f"cannot render: {exc}"
        return format_html(
            '<div style="white-space: pre-wrap"><b>{}</b>\n\n{}</div>', subject, body
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """The delivery log, read-only."""

    list_display = (
        "id",
        "created_at",
        "kind",
        "channel",
        "to",
        "status",
        "template_version",
        "cost",
        "provider_message_id",
    )
    list_filter = ("status", "channel", "kind", "urgent")
    search_fields = ("to", "provider_message_id", "recipient__ref", "dedupe_key")
    list_select_related = ("recipient",)
    raw_id_fields = ("recipient", "template", "batch", "booking", "webhook_endpoint")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(outbox.outbox_view)
        return [path("outbox/", view, name="notifications-outbox"), *super().get_urls()]

    actions = ["resend"]

    def has_send_permission(self, request: HttpRequest) -> bool:
        return may_send(request)

    @admin.action(
        description="Resend the selected failed messages (new delivery jobs)",
        permissions=["send"],
    )
    def resend(self, request: HttpRequest, queryset: QuerySet[Message]) -> HttpResponse | None:
        failed = queryset.filter(status=MessageStatus.FAILED)
        page = queueing.confirm_action(
            self, request, failed, "resend", "send these failed messages again"
        )
        if page:
            return page
        jobs = []
        for message in failed:
            with transaction.atomic():
                job = services.resend(message)
                if job is not None:
                    log_each(
                        request,
                        Message.objects.filter(id=message.id),
                        f"resent (delivery job {job.id}); it had failed: {message.error}"[:500],
                    )
                    queueing.audit_enqueued(request, job, f"via admin: resend message {message.id}")
                    jobs.append(job)
        skipped = queryset.count() - len(jobs)
        self.message_user(
            request,
            f"{len(jobs)} message(s) queued again; {skipped} skipped (not failed, or no address).",
            messages.SUCCESS,
        )
        return None


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("channel", "address", "reason", "detail", "created_at")
    list_filter = ("channel", "reason")
    search_fields = ("address",)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("id", "recipient", "url", "active", "failure_streak", "disabled_at")
    list_filter = ("active",)
    raw_id_fields = ("recipient",)
    readonly_fields = ("failure_streak", "disabled_at", "disabled_reason")
    actions = ["enable"]

    @admin.action(description="Enable the selected endpoints again (streak reset)")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = queryset.update(active=True, failure_streak=0, disabled_at=None, disabled_reason="")
        self.message_user(request, f"{count} endpoint(s) enabled.", messages.SUCCESS)


class ReminderInline(admin.TabularInline):
    model = Reminder
    extra = 0
    readonly_fields = ("offset_seconds", "due_at", "status", "job_id", "note")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    """A new booking gets its reminders; a changed time moves them (move_booking); the
    status changes only through the confirmed "Cancel" action (cancel_booking)."""

    list_display = ("ref", "recipient", "scheduled_for", "location", "status")
    list_filter = ("status",)
    search_fields = ("ref", "recipient__ref")
    raw_id_fields = ("recipient",)
    list_select_related = ("recipient",)
    inlines = [ReminderInline]
    actions = ["cancel_bookings"]

    def get_readonly_fields(self, request: HttpRequest, obj: Booking | None = None) -> Any:
        if obj is None:
            return ("status", "created_at")
        if obj.status != BookingStatus.SCHEDULED:
            return ("ref", "recipient", "scheduled_for", "status", "created_at")
        return ("ref", "recipient", "status", "created_at")

    def save_model(self, request: HttpRequest, obj: Booking, form: Any, change: bool) -> None:
        moved = change and "scheduled_for" in form.changed_data
        if moved:
            when = obj.scheduled_for
            obj.scheduled_for = form.initial["scheduled_for"]
        super().save_model(request, obj, form, change)  # the other fields (location)
        if moved:
            reminders.move_booking(obj.ref, when)
            obj.refresh_from_db()
            self.message_user(request, "Moved: its reminders follow.", messages.SUCCESS)
        elif not change:
            reminders.schedule_reminders(obj)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    @admin.action(
        description="Cancel the selected bookings (and their reminders)", permissions=["cancel"]
    )
    def cancel_bookings(
        self, request: HttpRequest, queryset: QuerySet[Booking]
    ) -> HttpResponse | None:
        waiting = queryset.filter(status=BookingStatus.SCHEDULED)
        page = queueing.confirm_action(
            self,
            request,
            waiting,
            "cancel_bookings",
            "cancel these bookings; their reminders and unsent messages are cancelled",
        )
        if page:
            return page
        refs = list(waiting.values_list("ref", flat=True))
        for ref in refs:
            with transaction.atomic():
                booking = reminders.cancel_booking(ref)
                log_each(request, Booking.objects.filter(id=booking.id), "cancelled")
        self.message_user(request, f"{len(refs)} booking(s) cancelled.", messages.SUCCESS)
        return None

    def delete_model(self, request: HttpRequest, obj: Booking) -> None:
        if obj.status == BookingStatus.SCHEDULED:
            reminders.cancel_booking(obj.ref)  # no reminder of a deleted booking goes out
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Booking]) -> None:
        for ref in queryset.filter(status=BookingStatus.SCHEDULED).values_list("ref", flat=True):
            reminders.cancel_booking(ref)
        super().delete_queryset(request, queryset)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "channel", "recipient_count", "created_at")
    readonly_fields = ("kind", "channel", "context", "recipient_count", "created_at", "job_id")

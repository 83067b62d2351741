"""Admin of notifications: recipients with their preferences, kinds and versioned
templates (with a preview on sample data), the delivery log, suppressions, webhook
endpoints, bookings with their reminders, and the development Outbox (outbox.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Max, QuerySet
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html

from notifications import outbox, rendering
from notifications.models import (
    Batch,
    Booking,
    Message,
    MessageKind,
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
    model = PushSubscription
    extra = 0
    fields = ("endpoint", "active", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ("ref", "name", "kind", "email", "phone", "locale", "quiet_start", "quiet_end")
    list_filter = ("kind", "locale")
    search_fields = ("ref", "name", "email", "phone")
    inlines = [PreferenceInline, PushSubscriptionInline]


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
    list_display = ("ref", "recipient", "scheduled_for", "location", "status")
    list_filter = ("status",)
    search_fields = ("ref", "recipient__ref")
    raw_id_fields = ("recipient",)
    list_select_related = ("recipient",)
    inlines = [ReminderInline]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "channel", "recipient_count", "created_at")
    readonly_fields = ("kind", "channel", "context", "recipient_count", "created_at", "job_id")

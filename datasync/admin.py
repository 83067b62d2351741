"""Inbound webhook events: read-only, with a confirmed "process again" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from datasync import services
from datasync.models import WebhookEvent


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

"""Notification endpoints, mounted under /api/v1/queue/ by the platform (docs/api.md):

- ``POST notifications``: a kind to recipients or a segment (job notifications.send_batch;
  roles admin, dispatcher; 202 + the job);
- ``GET notifications/recipients/<ref>/messages``: a recipient's history (admin,
  dispatcher);
- ``GET|POST notifications/unsubscribe/<token>``: the link in every email; a signed
  token, no login (GET shows a button, POST unsubscribes, as RFC 8058's one-click does).
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from notifications import services
from notifications.models import Message, Recipient
from queueing import JobEndpoint


class MaySendNotifications(BasePermission):
    """Admins and dispatchers: who may enqueue notification jobs may read their log."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_superuser or any(
            user.has_perm(f"queueing.{perm}") for perm in ("enqueue_notifications", "enqueue_any")
        )


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id",
            "kind",
            "channel",
            "to",
            "subject",
            "body",
            "status",
            "urgent",
            "template_version",
            "provider_message_id",
            "cost",
            "cost_unit",
            "error",
            "batch",
            "booking",
            "created_at",
            "send_at",
            "held_until",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
        ]


class RecipientHistoryView(generics.ListAPIView):
    """A recipient's messages, newest first (paginated)."""

    serializer_class = MessageSerializer
    permission_classes = [MaySendNotifications]
    query_params = frozenset({"page"})

    def get_queryset(self) -> Any:
        ref = self.kwargs["ref"]
        if not Recipient.objects.filter(ref=ref).exists():
            raise NotFound(f"no recipient {ref!r}")
        return services.history(ref)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">{}</body></html>"""


@csrf_exempt  # the signed token is the authority; mail clients POST without a session
def unsubscribe_view(request: HttpRequest, token: str) -> HttpResponse:
    try:
        data = signing.loads(token, salt=services.UNSUBSCRIBE_SALT)
        recipient = Recipient.objects.get(id=data["r"])
    except (signing.BadSignature, Recipient.DoesNotExist, KeyError, TypeError):
        return HttpResponse(_PAGE.format("<p>This unsubscribe link is not valid.</p>"), status=400)
    kind = escape(data.get("k", ""))
    if request.method == "POST":
        every = request.POST.get("all") == "1"
        services.unsubscribe(token, every_kind=every)
        what = "any email from us" if every else f"{kind} emails"
        return HttpResponse(_PAGE.format(f"<p>Done: you will not get {what} any more.</p>"))
    if request.method != "GET":
        return HttpResponse(status=405)
    return HttpResponse(
        _PAGE.format(
            f"<p>{escape(recipient.name)}, stop getting <b>{kind}</b> emails?</p>"
            '<form method="post"><button type="submit">Unsubscribe</button> '
            '<label><input type="checkbox" name="all" value="1"> from every email</label>'
            "</form>"
        )
    )


urlpatterns = [
    path(
        "notifications",
        JobEndpoint.as_view(task="notifications.send_batch"),
        name="notifications-send",
    ),
    path(
        "notifications/recipients/<str:ref>/messages",
        RecipientHistoryView.as_view(),
        name="notifications-history",
    ),
    path(
        "notifications/unsubscribe/<str:token>",
        unsubscribe_view,
        name="notifications-unsubscribe",
    ),
]

"""Notification endpoints, mounted under /api/v1/queue/ by the platform (docs/api.md):

- ``POST notifications``: a kind to recipients or a segment (job notifications.send_batch;
  roles admin, dispatcher; 202 + the job);
- ``GET notifications/recipients/<ref>/messages``: a recipient's history (admin,
  dispatcher);
- ``GET|POST notifications/unsubscribe/<token>``: the link in every email; a signed
  token, no login (GET shows a button, POST unsubscribes, as RFC 8058's one-click does);
- ``GET notifications/push/key``: the VAPID public key a browser subscribes with
  (``applicationServerKey``);
- ``POST notifications/push/subscriptions``: a browser registers its PushSubscription
  for the user's own recipient (customer, driver), or, for admins and dispatchers, for
  the recipient they name.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import services
from notifications.channels.push import vapid_public_key
from notifications.models import Message, PushSubscription, Recipient
from queueing import JobEndpoint, PermanentError


def may_send(user: Any) -> bool:
    """Admins and dispatchers (who may enqueue notification jobs)."""
    return bool(
        user
        and user.is_authenticated
        and (
            user.is_superuser
            or any(
                user.has_perm(f"queueing.{perm}")
                for perm in ("enqueue_notifications", "enqueue_any")
            )
        )
    )


class MaySendNotifications(BasePermission):
    """Admins and dispatchers: who may enqueue notification jobs may read their log."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return may_send(request.user)


# Roles whose browsers get pushes: their own recipient (Recipient.user).
PUSH_ROLES = ("customer", "driver")


class MayRegisterPush(BasePermission):
    """Customers and drivers (for their own recipient), admins and dispatchers."""

    message = "push subscriptions are for customers, drivers, dispatchers and admins"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return may_send(user) or user.groups.filter(name__in=PUSH_ROLES).exists()


def _b64url_bytes(value: str, length: int, what: str) -> str:
    """``value`` if it is unpadded-or-padded base64url of ``length`` bytes."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise serializers.ValidationError(f"not base64url: {what}") from None
    if len(raw) != length:
        raise serializers.ValidationError(f"{what} must be {length} bytes, got {len(raw)}")
    return value


class PushKeysSerializer(serializers.Serializer):
    p256dh = serializers.CharField(max_length=200)
    auth = serializers.CharField(max_length=100)

    def validate_p256dh(self, value: str) -> str:
        _b64url_bytes(value, 65, "the browser's P-256 public key (uncompressed point)")
        if base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))[0] != 4:
            raise serializers.ValidationError("not an uncompressed P-256 point")
        return value

    def validate_auth(self, value: str) -> str:
        return _b64url_bytes(value, 16, "the auth secret")


class PushSubscriptionSerializer(serializers.Serializer):
    """The browser's PushSubscription.toJSON() (``expirationTime`` allowed, ignored), and
    ``recipient`` (a ref) for admins and dispatchers."""

    endpoint = serializers.URLField(max_length=1000)
    keys = PushKeysSerializer()
    expirationTime = serializers.FloatField(required=False, allow_null=True)
    recipient = serializers.CharField(max_length=64, required=False)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class VapidKeySerializer(serializers.Serializer):
    public_key = serializers.CharField()


class PushSubscriptionAnswer(serializers.Serializer):
    id = serializers.IntegerField()
    recipient = serializers.CharField()
    endpoint = serializers.URLField()
    active = serializers.BooleanField()


class PushSubscriptionsView(APIView):
    """Register a browser's push subscription: 201 (new) or 200 (known endpoint: its keys
    and recipient updated, active again)."""

    permission_classes = [MayRegisterPush]

    @extend_schema(
        request=PushSubscriptionSerializer,
        responses={201: PushSubscriptionAnswer, 200: PushSubscriptionAnswer},
        summary="Register a browser's push subscription",
    )
    def post(self, request: Request) -> Response:
        body = PushSubscriptionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        recipient = self._recipient(request, data.get("recipient"))
        with transaction.atomic():
            subscription, created = PushSubscription.objects.update_or_create(
                endpoint=data["endpoint"],
                defaults={
                    "recipient": recipient,
                    "p256dh": data["keys"]["p256dh"],
                    "auth": data["keys"]["auth"],
                    "active": True,
                },
            )
        return Response(
            {
                "id": subscription.id,
                "recipient": recipient.ref,
                "endpoint": subscription.endpoint,
                "active": True,
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _recipient(self, request: Request, ref: str | None) -> Recipient:
        if ref is not None:
            if not may_send(request.user):
                raise serializers.ValidationError(
                    {"recipient": ["only admins and dispatchers name a recipient"]}
                )
            found = Recipient.objects.filter(ref=ref).first()
            if found is None:
                raise serializers.ValidationError({"recipient": [f"no recipient {ref!r}"]})
            return found
        own = Recipient.objects.filter(user_id=request.user.pk or 0).first()  # logged in
        if own is None:
            if may_send(request.user):
                raise serializers.ValidationError({"recipient": ["name the recipient"]})
            raise PermissionDenied("your login is not linked to a recipient")
        return own


class VapidKeyView(APIView):
    """The VAPID public key (``applicationServerKey``); 404 when Web Push has no key."""

    permission_classes = [MayRegisterPush]

    @extend_schema(
        responses={200: VapidKeySerializer}, summary="The VAPID public key (applicationServerKey)"
    )
    def get(self, request: Request) -> Response:
        try:
            key = vapid_public_key()
        except PermanentError as exc:
            raise NotFound(f"Web Push is not configured: {exc}") from None
        return Response({"public_key": key})


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
    path("notifications/push/key", VapidKeyView.as_view(), name="notifications-push-key"),
    path(
        "notifications/push/subscriptions",
        PushSubscriptionsView.as_view(),
        name="notifications-push-subscriptions",
    ),
    path(
        "notifications/unsubscribe/<str:token>",
        unsubscribe_view,
        name="notifications-unsubscribe",
    ),
]

"""Alerts in the API: list them, and answer an open one (acknowledge, snooze, take back).
Reading needs view_queue_stats; answering needs operate_queues, like pausing a queue."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api.endpoints import ERRORS
from queueing.api.errors import Conflict
from queueing.api.permissions import requires
from queueing.api.serializers import StrictSerializer
from queueing.api.throttles import AdminOpsThrottle, GeneralThrottle
from queueing.audit import record_request
from queueing.models import Alert, AlertStatus
from queueing.observe import alert_actions


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", default=None)

    class Meta:
        model = Alert
        fields = (
            "id", "key", "kind", "queue", "severity", "status", "message", "value",
            "threshold", "opened_at", "last_seen_at", "resolved_at", "notified_at",
            "acknowledged_at", "acknowledged_by", "snoozed_until", "note",
        )  # fmt: skip
        read_only_fields = fields


class AcknowledgeSerializer(StrictSerializer):
    note = serializers.CharField(max_length=2000, allow_blank=True, default="")


class SnoozeSerializer(StrictSerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=alert_actions.MAX_SNOOZE_MINUTES)
    note = serializers.CharField(max_length=2000, allow_blank=True, default="")


class AlertListView(GenericAPIView):
    permission_classes = [requires("view_queue_stats")]
    query_params = frozenset({"status", "page"})
    serializer_class = AlertSerializer

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=AlertStatus.values)],
        responses={200: AlertSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        alerts = Alert.objects.select_related("acknowledged_by").order_by("-opened_at")
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in AlertStatus.values:
                choices = ", ".join(AlertStatus.values)
                raise serializers.ValidationError({"status": [f"must be one of {choices}"]})
            alerts = alerts.filter(status=wanted)
        page = self.paginate_queryset(alerts)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class _AlertAnswer(APIView):
    permission_classes = [requires("operate_queues")]
    throttle_classes = [GeneralThrottle, AdminOpsThrottle]
    action = ""

    def answer(self, request, alert_id: int, data: dict) -> tuple[Alert, dict]:
        raise NotImplementedError

    def post(self, request, alert_id: int):
        get_object_or_404(Alert, id=alert_id)
        with transaction.atomic():
            try:
                alert, before = self.answer(request, alert_id, request.data)
            except alert_actions.AlertActionError as exc:
                raise Conflict(str(exc)) from None
            record_request(
                request,
                f"alert.{self.action}",
                ("alert", alert.id),
                before=before,
                after=alert_actions.state_of(alert),
            )
        return Response(AlertSerializer(alert).data)


class AlertAcknowledgeView(_AlertAnswer):
    action = "acknowledge"

    @extend_schema(request=AcknowledgeSerializer, responses={200: AlertSerializer, **ERRORS})
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def answer(self, request, alert_id, data):
        body = AcknowledgeSerializer(data=data)
        body.is_valid(raise_exception=True)
        return alert_actions.acknowledge(alert_id, user=request.user, **body.validated_data)


class AlertSnoozeView(_AlertAnswer):
    action = "snooze"

    @extend_schema(request=SnoozeSerializer, responses={200: AlertSerializer, **ERRORS})
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def answer(self, request, alert_id, data):
        body = SnoozeSerializer(data=data)
        body.is_valid(raise_exception=True)
        return alert_actions.snooze(alert_id, user=request.user, **body.validated_data)


class AlertUnacknowledgeView(_AlertAnswer):
    action = "unacknowledge"

    @extend_schema(request=None, responses={200: AlertSerializer, **ERRORS})
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def answer(self, request, alert_id, data):
        return alert_actions.unacknowledge(alert_id, user=request.user)

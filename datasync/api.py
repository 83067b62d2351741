"""The data sync's endpoints under /api/v1/queue/ (mounted by the platform).

POST data-sync                   sync a source: {"source", "mode", "dry_run"} (admin,
                                 manager); 202 with the job; one run per source at a time
GET  data-sync/runs              run history, newest first (?source=, ?status=)
GET  data-sync/runs/<id>         one run with its counts and its record errors (the
                                 first 100, in record_errors)
GET  data-sync/conflicts         the conflict queue (?status=open by default)
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import BasePermission

from datasync.models import ConflictStatus, RecordError, SyncConflict, SyncRun
from queueing import JobEndpoint

ROLES = ("admin", "manager")
# A run's detail lists at most this many record errors (the admin shows them all).
DETAIL_MAX_ERRORS = 100


class IsSyncRole(BasePermission):
    message = "your role may not read data sync runs"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser or user.groups.filter(name__in=ROLES).exists())


class RunSerializer(serializers.ModelSerializer[SyncRun]):
    source = serializers.CharField(source="source.name")  # type: ignore[assignment]

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "source",
            "mode",
            "dry_run",
            "status",
            "job_id",
            "started_at",
            "finished_at",
            *SyncRun.COUNTS,
            "checkpoint",
            "since",
            "newest_change",
            "error",
        ]


class RecordErrorSerializer(serializers.ModelSerializer[RecordError]):
    class Meta:
        model = RecordError
        fields = ["external_id", "reason", "values", "at"]


class RunDetailSerializer(RunSerializer):
    record_errors = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "record_errors"]

    def get_record_errors(self, run: SyncRun) -> list[dict[str, Any]]:
        rows = run.errors.order_by("id")[:DETAIL_MAX_ERRORS]
        return list(RecordErrorSerializer(rows, many=True).data)


class ConflictSerializer(serializers.ModelSerializer[SyncConflict]):
    source = serializers.CharField(source="source.name")  # type: ignore[assignment]
    external_id = serializers.CharField(source="record.external_id")
    local_id = serializers.IntegerField(source="record.local_id")

    class Meta:
        model = SyncConflict
        fields = [
            "id",
            "source",
            "external_id",
            "local_id",
            "status",
            "source_values",
            "local_values",
            "detected_at",
            "resolved_at",
            "resolved_by",
        ]


class RunListView(ListAPIView[SyncRun]):
    serializer_class = RunSerializer
    permission_classes = [IsSyncRole]
    query_params = frozenset({"page", "source", "status"})

    def get_queryset(self) -> QuerySet[SyncRun]:
        runs = SyncRun.objects.select_related("source")
        params = self.request.query_params
        if params.get("source"):
            runs = runs.filter(source__name=params["source"])
        if params.get("status"):
            runs = runs.filter(status=params["status"])
        return runs.order_by("-started_at", "-id")


class RunDetailView(RetrieveAPIView[SyncRun]):
    serializer_class = RunDetailSerializer
    permission_classes = [IsSyncRole]
    lookup_url_kwarg = "run_id"
    queryset = SyncRun.objects.select_related("source")


class ConflictListView(ListAPIView[SyncConflict]):
    serializer_class = ConflictSerializer
    permission_classes = [IsSyncRole]
    query_params = frozenset({"page", "source", "status"})

    def get_queryset(self) -> QuerySet[SyncConflict]:
        conflicts = SyncConflict.objects.select_related("source", "record")
        params = self.request.query_params
        conflicts = conflicts.filter(status=params.get("status") or ConflictStatus.OPEN)
        if params.get("source"):
            conflicts = conflicts.filter(source__name=params["source"])
        return conflicts.order_by("-detected_at", "-id")


urlpatterns = [
    path("data-sync", JobEndpoint.as_view(task="datasync.run_sync"), name="data-sync"),
    path("data-sync/runs", RunListView.as_view(), name="data-sync-runs"),
    path("data-sync/runs/<int:run_id>", RunDetailView.as_view(), name="data-sync-run"),
    path("data-sync/conflicts", ConflictListView.as_view(), name="data-sync-conflicts"),
]

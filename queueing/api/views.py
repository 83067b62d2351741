"""Views of the queue API: health, status and stats, jobs, queue operations.

Recurring jobs and dead letters are in queueing/api/operations.py. Every view names its
permission (queueing/api/permissions.py) and throttles; every mutating view writes one
audit event in the transaction that makes its change.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import Http404, QueryDict
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api import serializers as s
from queueing.api.contracts import validate_arguments
from queueing.api.endpoints import ERRORS, accept_job, accepted, api_task, job_state
from queueing.api.errors import Conflict
from queueing.api.permissions import CanEnqueueSomething, requires
from queueing.api.throttles import (
    AdminOpsThrottle,
    GeneralThrottle,
    JobCreateThrottle,
    RefundRefusedCreations,
)
from queueing.audit import record_request
from queueing.control.operations import RetryRefused, cancel, retry
from queueing.control.pause import pause_queue, resume_queue
from queueing.control.retention import clean_queue
from queueing.models import Job, JobStatus, QueueState
from queueing.observe import stats
from queueing.roles import may_operate

# --- health and stats -------------------------------------------------------------------


class HealthView(APIView):
    """Liveness for load balancers: public, so it says only ok or not."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(auth=[], responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            return Response({"status": "unavailable"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"status": "ok"})


class StatusView(APIView):
    permission_classes = [requires("view_queue_stats")]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        queues = stats.queue_overview()
        totals = {state: sum(q["counts"][state] for q in queues) for state in JobStatus.values}
        return Response({"time": timezone.now(), "queues": queues, "totals": totals})


def _minutes(request) -> int:
    field = serializers.IntegerField(min_value=1, max_value=1440)
    try:
        return field.run_validation(request.query_params.get("minutes", 60))
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"minutes": exc.detail}) from None


MINUTES = OpenApiParameter("minutes", int, description="window, 1-1440 (default 60)")


def _declared(queue: str) -> str:
    if queue not in settings.TASKYARD_QUEUES:
        raise Http404(f"no queue {queue!r}")
    return queue


class StatsView(APIView):
    query_params = frozenset({"minutes"})
    permission_classes = [requires("view_queue_stats")]

    @extend_schema(
        operation_id="stats_all_queues",
        parameters=[MINUTES],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        return Response(stats.window_stats(minutes=_minutes(request)))


class QueueStatsView(APIView):
    query_params = frozenset({"minutes"})
    permission_classes = [requires("view_queue_stats")]

    @extend_schema(
        operation_id="stats_queue",
        parameters=[MINUTES],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, queue: str):
        _declared(queue)
        return Response(
            {
                **stats.queue_overview([queue])[0],
                **stats.window_stats(queue, minutes=_minutes(request)),
            }
        )


class MetricsView(APIView):
    query_params = frozenset({"minutes", "queue"})
    permission_classes = [requires("view_queue_stats")]

    @extend_schema(
        parameters=[MINUTES, OpenApiParameter("queue", str)],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        queue = request.query_params.get("queue")
        if queue is not None:
            _declared(queue)
        return Response(
            {
                "queue": queue,
                "series": stats.time_series(_minutes(request), queue),
            }
        )


# --- jobs -------------------------------------------------------------------------------


def visible_jobs(user):
    """Every job for a role that sees all; otherwise only the user's own."""
    jobs = Job.objects.all()
    if not user.has_perm("queueing.view_all_jobs"):
        jobs = jobs.filter(enqueued_by=user)
    return jobs


def filter_jobs(jobs: QuerySet[Job], params: QueryDict) -> QuerySet[Job]:
    query = s.JobListQuerySerializer(data=params.dict())
    query.is_valid(raise_exception=True)
    data = query.validated_data
    for field, lookup in (
        ("queue", "queue"),
        ("status", "status"),
        ("task", "task_name"),
        ("enqueued_after", "enqueued_at__gte"),
        ("enqueued_before", "enqueued_at__lt"),
    ):
        if field in data:
            jobs = jobs.filter(**{lookup: data[field]})
    return jobs.order_by("-enqueued_at")


JOB_QUERY_PARAMS = frozenset(
    {"queue", "status", "task", "enqueued_after", "enqueued_before", "page"}
)
JOB_FILTERS = [
    OpenApiParameter("queue", str),
    OpenApiParameter("status", str, enum=JobStatus.values),
    OpenApiParameter("task", str),
    OpenApiParameter("enqueued_after", OpenApiTypes.DATETIME),
    OpenApiParameter("enqueued_before", OpenApiTypes.DATETIME),
]


# Sees every job, or (a role that may enqueue) the jobs it enqueued: visible_jobs() filters.
SEES_JOBS = requires("view_all_jobs") | CanEnqueueSomething


class JobsView(RefundRefusedCreations, GenericAPIView):
    serializer_class = s.JobSerializer
    query_params = JOB_QUERY_PARAMS

    def get_permissions(self):
        if self.request.method == "POST":
            return [CanEnqueueSomething()]
        return [SEES_JOBS()]

    def get_throttles(self):
        if self.request.method == "POST":
            return [GeneralThrottle(), JobCreateThrottle()]
        return [GeneralThrottle()]

    @extend_schema(
        operation_id="jobs_list",
        parameters=JOB_FILTERS,
        responses={200: s.JobSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        page = self.paginate_queryset(filter_jobs(visible_jobs(request.user), request.query_params))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=s.JobCreateSerializer,
        responses={202: s.JobSerializer, 413: OpenApiResponse(s.ErrorSerializer), **ERRORS},
        description="Enqueue an API-enabled task. Its `args` are checked against the task's "
        "contract; 202 with the job and its URL in `Location`.",
    )
    def post(self, request):
        body = s.JobCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task = api_task(data["task"])
        options = {
            key: data.get(key)
            for key in ("queue", "priority", "countdown", "run_at", "unique_key", "max_attempts")
        }
        return accept_job(
            request,
            task,
            validate_arguments(task, data.get("args")),
            on_conflict=data["on_conflict"],
            **options,
        )


def visible_job(request, job_id) -> Job:
    return get_object_or_404(visible_jobs(request.user), id=job_id)


class JobDetailView(APIView):
    permission_classes = [SEES_JOBS]

    @extend_schema(responses={200: s.JobDetailSerializer, **ERRORS})
    def get(self, request, job_id: str):
        return Response(s.JobDetailSerializer(visible_job(request, job_id)).data)


class JobCancelView(APIView):
    permission_classes = [CanEnqueueSomething]

    @extend_schema(
        request=s.CancelSerializer,
        responses={200: s.CancelResultSerializer, 409: s.ErrorSerializer, **ERRORS},
    )
    def post(self, request, job_id: str):
        body = s.CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = visible_job(request, job_id)
        if not may_operate(request.user, job):
            raise PermissionDenied(f"your role may not cancel jobs on queue {job.queue}")
        with transaction.atomic():
            before = job_state(job)
            result = cancel(
                job.id,
                terminate=body.validated_data["terminate"],
                reason=body.validated_data["reason"],
            )
            if result.outcome == "already final":
                raise Conflict(f"job {job.id} already ended ({result.status})")
            record_request(
                request,
                "job.cancel",
                ("job", job.id),
                before=before,
                after={"status": result.status, "outcome": result.outcome},
                reason=body.validated_data["reason"],
            )
        return Response({"job": job.id, "status": result.status, "outcome": result.outcome})


class JobRetryView(APIView):
    permission_classes = [CanEnqueueSomething]

    def get_throttles(self):
        return [GeneralThrottle(), JobCreateThrottle()]

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer, 409: s.ErrorSerializer, **ERRORS},
        description="Waiting for a retry or scheduled: run it now. Dead: replay it as a new "
        "job (Location names it). Cancelled: enqueue a copy. Otherwise 409.",
    )
    def post(self, request, job_id: str):
        job = visible_job(request, job_id)
        if not may_operate(request.user, job):
            raise PermissionDenied(f"your role may not retry jobs on queue {job.queue}")
        with transaction.atomic():
            before = job_state(job)
            try:
                retried = retry(job.id, user=request.user)
            except RetryRefused as exc:
                raise Conflict(str(exc)) from None
            record_request(
                request,
                "job.retry",
                ("job", job.id),
                before=before,
                after={"job": str(retried.id), **job_state(retried)},
            )
        return accepted(retried)


# --- queue operations -------------------------------------------------------------------


class _QueueOperation(APIView):
    permission_classes = [requires("operate_queues")]
    throttle_classes = [GeneralThrottle, AdminOpsThrottle]


class QueuePauseView(_QueueOperation):
    paused = True

    @extend_schema(
        request=s.QueueActionSerializer, responses={200: s.QueueStateSerializer, **ERRORS}
    )
    def post(self, request, queue: str):
        _declared(queue)
        body = s.QueueActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        with transaction.atomic():
            was = QueueState.objects.filter(name=queue, paused=True).exists()
            change = pause_queue if self.paused else resume_queue
            state = change(queue, user=request.user, reason=reason)
            record_request(
                request,
                "queue.pause" if self.paused else "queue.resume",
                ("queue", queue),
                before={"paused": was},
                after={"paused": state.paused},
                reason=reason,
            )
        return Response({"queue": queue, "paused": state.paused, "reason": state.reason})


class QueueResumeView(QueuePauseView):
    paused = False


class QueueCleanView(_QueueOperation):
    @extend_schema(request=s.CleanSerializer, responses={200: s.CleanResultSerializer, **ERRORS})
    def post(self, request, queue: str):
        _declared(queue)
        body = s.CleanSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        deleted = clean_queue(
            queue, data["status"], data["older_than_seconds"], dry_run=data["dry_run"]
        )
        if not data["dry_run"]:
            record_request(
                request,
                "queue.clean",
                ("queue", queue),
                before=None,
                after={
                    "deleted": deleted,
                    "status": data["status"],
                    "older_than_seconds": data["older_than_seconds"],
                },
            )
        return Response(
            {
                "queue": queue,
                "status": data["status"],
                "deleted": deleted,
                "dry_run": data["dry_run"],
            }
        )


class QueueJobsView(GenericAPIView):
    serializer_class = s.JobSerializer
    query_params = JOB_QUERY_PARAMS
    permission_classes = [requires("view_all_jobs")]

    @extend_schema(
        operation_id="queue_jobs_list",
        parameters=JOB_FILTERS,
        responses={200: s.JobSerializer(many=True), **ERRORS},
    )
    def get(self, request, queue: str):
        _declared(queue)
        jobs = filter_jobs(Job.objects.filter(queue=queue), request.query_params)
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

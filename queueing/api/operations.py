"""Views of the queue API: recurring jobs (django-celery-beat) and dead letters."""

from __future__ import annotations

import json
from typing import cast

from celery.schedules import crontab
from django.conf import settings
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api import serializers as s
from queueing.api.contracts import validate_arguments
from queueing.api.endpoints import ERRORS, accepted, api_task, routed_queue
from queueing.api.errors import Conflict
from queueing.api.permissions import requires
from queueing.api.throttles import AdminOpsThrottle, GeneralThrottle
from queueing.audit import record_request
from queueing.ledger.deadletters import DeadLetterError, mark_reviewed, replay
from queueing.ledger.enqueue import PRIORITY_MAX, PRIORITY_MIN
from queueing.models import DeadLetter, DeadLetterReason

# --- recurring jobs ---------------------------------------------------------------------

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class RecurringSerializer(s.StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    task = serializers.CharField(max_length=200, help_text="an API-enabled task name")
    args = serializers.JSONField(required=False, default=dict)
    cron = serializers.CharField(
        max_length=200, required=False, help_text="minute hour day-of-month month day-of-week"
    )
    every_seconds = serializers.IntegerField(min_value=1, max_value=366 * 86400, required=False)
    queue = serializers.ChoiceField(choices=[], required=False, allow_null=True)
    priority = serializers.IntegerField(
        min_value=PRIORITY_MIN, max_value=PRIORITY_MAX, required=False, allow_null=True
    )
    enabled = serializers.BooleanField(default=True)
    description = serializers.CharField(max_length=2000, allow_blank=True, default="")
    last_run_at = serializers.DateTimeField(read_only=True)
    total_run_count = serializers.IntegerField(read_only=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(serializers.ChoiceField, self.fields["queue"]).choices = list(settings.TASKYARD_QUEUES)

    def validate_cron(self, value: str) -> str:
        parts = value.split()
        if len(parts) != len(CRON_FIELDS):
            raise serializers.ValidationError("a cron expression has 5 fields")
        try:
            crontab(**dict(zip(CRON_FIELDS, parts, strict=True)))
        except (ValueError, TypeError) as exc:
            raise serializers.ValidationError(f"not a valid cron expression: {exc}") from None
        return " ".join(parts)

    def validate(self, data: dict) -> dict:
        given = [field for field in ("cron", "every_seconds") if data.get(field) is not None]
        if len(given) > 1:
            raise serializers.ValidationError({"cron": ["give cron or every_seconds, not both"]})
        if not given and not self.partial:
            raise serializers.ValidationError({"cron": ["give cron or every_seconds"]})
        return data

    def to_representation(self, periodic: PeriodicTask) -> dict:
        cron = None
        if periodic.crontab_id:
            c = periodic.crontab
            cron = " ".join([c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week])
        return {
            "id": periodic.id,
            "name": periodic.name,
            "task": periodic.task,
            "args": json.loads(periodic.kwargs or "{}"),
            "cron": cron,
            "every_seconds": (
                periodic.interval.every
                * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}.get(
                    periodic.interval.period, 1
                )
                if periodic.interval_id
                else None
            ),
            "queue": periodic.queue,
            "priority": periodic.priority,
            "enabled": periodic.enabled,
            "description": periodic.description,
            "last_run_at": periodic.last_run_at,
            "total_run_count": periodic.total_run_count,
        }


def _schedule_fields(data: dict) -> dict:
    if data.get("cron"):
        minute, hour, day_of_month, month, day_of_week = data["cron"].split()
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
            timezone=settings.TIME_ZONE,
        )
        return {"crontab": schedule, "interval": None}
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=data["every_seconds"], period=IntervalSchedule.SECONDS
    )
    return {"interval": schedule, "crontab": None}


def _checked_task(request, name: str, args, queue: str | None) -> tuple[str, dict]:
    task = api_task(name)
    kwargs = validate_arguments(task, args)
    routed_queue(request, task, kwargs, queue)
    return task.name, kwargs


class _RecurringBase(GenericAPIView):
    permission_classes = [requires("manage_recurring")]
    query_params = frozenset({"page"})
    serializer_class = RecurringSerializer

    def get_throttles(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [GeneralThrottle()]
        return [GeneralThrottle(), AdminOpsThrottle()]


class RecurringListView(_RecurringBase):
    @extend_schema(responses={200: RecurringSerializer(many=True), **ERRORS})
    def get(self, request):
        periodic = PeriodicTask.objects.exclude(task="celery.backend_cleanup").order_by("id")
        page = self.paginate_queryset(periodic.select_related("crontab", "interval"))
        return self.get_paginated_response(RecurringSerializer(page, many=True).data)

    @extend_schema(request=RecurringSerializer, responses={201: RecurringSerializer, **ERRORS})
    def post(self, request):
        body = RecurringSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task, kwargs = _checked_task(request, data["task"], data.get("args"), data.get("queue"))
        try:
            with transaction.atomic():
                periodic = PeriodicTask.objects.create(
                    name=data["name"],
                    task=task,
                    kwargs=json.dumps(kwargs),
                    queue=data.get("queue"),
                    priority=data.get("priority"),
                    enabled=data["enabled"],
                    description=data["description"],
                    **_schedule_fields(data),
                )
                after = RecurringSerializer(periodic).data
                record_request(request, "recurring.create", ("recurring", periodic.id), after=after)
        except IntegrityError:
            raise serializers.ValidationError(
                {"name": [f"a recurring job named {data['name']!r} exists"]}
            ) from None
        return Response(after, status=status.HTTP_201_CREATED)


class RecurringDetailView(_RecurringBase):
    def _get(self, recurring_id: int) -> PeriodicTask:
        return get_object_or_404(
            PeriodicTask.objects.select_related("crontab", "interval"), id=recurring_id
        )

    @extend_schema(responses={200: RecurringSerializer, **ERRORS})
    def get(self, request, recurring_id: int):
        return Response(RecurringSerializer(self._get(recurring_id)).data)

    @extend_schema(request=RecurringSerializer, responses={200: RecurringSerializer, **ERRORS})
    def patch(self, request, recurring_id: int):
        periodic = self._get(recurring_id)
        body = RecurringSerializer(periodic, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        before = RecurringSerializer(periodic).data
        if {"task", "args", "queue"} & set(data):
            task, kwargs = _checked_task(
                request,
                data.get("task", periodic.task),
                data.get("args", json.loads(periodic.kwargs or "{}")),
                data.get("queue", periodic.queue),
            )
            periodic.task, periodic.kwargs = task, json.dumps(kwargs)
        for field in ("name", "queue", "priority", "enabled", "description"):
            if field in data:
                setattr(periodic, field, data[field])
        try:
            with transaction.atomic():
                if data.get("cron") or data.get("every_seconds"):
                    for field, value in _schedule_fields(data).items():
                        setattr(periodic, field, value)
                periodic.save()
                after = RecurringSerializer(periodic).data
                record_request(
                    request,
                    "recurring.update",
                    ("recurring", periodic.id),
                    before=before,
                    after=after,
                )
        except IntegrityError:
            raise serializers.ValidationError({"name": ["that name is taken"]}) from None
        return Response(after)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, recurring_id: int):
        periodic = self._get(recurring_id)
        with transaction.atomic():
            before = RecurringSerializer(periodic).data
            periodic.delete()
            record_request(request, "recurring.delete", ("recurring", recurring_id), before=before)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- dead letters -----------------------------------------------------------------------


class DeadLetterListView(GenericAPIView):
    permission_classes = [requires("view_dead_letters")]
    query_params = frozenset({"reviewed", "fingerprint", "queue", "task", "reason", "page"})
    serializer_class = s.DeadLetterSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("reviewed", bool),
            OpenApiParameter("fingerprint", str),
            OpenApiParameter("queue", str),
            OpenApiParameter("task", str),
        ],
        responses={200: s.DeadLetterSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        letters = DeadLetter.objects.select_related("job", "reviewed_by").order_by("-created_at")
        params = request.query_params
        if "reviewed" in params:
            flag = params["reviewed"].lower()
            if flag not in ("true", "false"):
                raise serializers.ValidationError({"reviewed": ["must be true or false"]})
            letters = letters.filter(reviewed=flag == "true")
        if "queue" in params and params["queue"] not in settings.TASKYARD_QUEUES:
            raise serializers.ValidationError({"queue": [f"no queue {params['queue']!r}"]})
        if "reason" in params and params["reason"] not in DeadLetterReason.values:
            choices = ", ".join(DeadLetterReason.values)
            raise serializers.ValidationError({"reason": [f"must be one of {choices}"]})
        for param, lookup in (
            ("fingerprint", "fingerprint"),
            ("queue", "job__queue"),
            ("task", "job__task_name"),
            ("reason", "reason"),
        ):
            if param in params:
                letters = letters.filter(**{lookup: params[param]})
        page = self.paginate_queryset(letters)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class _DeadLetterOperation(APIView):
    permission_classes = [requires("manage_dead_letters")]
    throttle_classes = [GeneralThrottle, AdminOpsThrottle]


class DeadLetterReviewView(_DeadLetterOperation):
    @extend_schema(request=s.ReviewSerializer, responses={200: s.DeadLetterSerializer, **ERRORS})
    def post(self, request, letter_id: int):
        body = s.ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        letter = get_object_or_404(DeadLetter, id=letter_id)
        with transaction.atomic():
            before = {"reviewed": letter.reviewed, "note": letter.note}
            letter = mark_reviewed(letter.id, user=request.user, note=body.validated_data["note"])
            record_request(
                request,
                "dead_letter.review",
                ("dead_letter", letter.id),
                before=before,
                after={"reviewed": True, "note": letter.note},
            )
        return Response(s.DeadLetterSerializer(letter).data)


class DeadLetterReplayView(_DeadLetterOperation):
    @extend_schema(
        operation_id="dead_letter_replay",
        request=None,
        responses={202: s.JobSerializer, 409: s.ErrorSerializer, **ERRORS},
    )
    def post(self, request, letter_id: int):
        letter = get_object_or_404(DeadLetter, id=letter_id)
        with transaction.atomic():
            try:
                job = replay(letter.id, user=request.user)
            except DeadLetterError as exc:
                raise Conflict(str(exc)) from None
            record_request(
                request,
                "dead_letter.replay",
                ("dead_letter", letter.id),
                before={"job": str(letter.job_id)},
                after={"replayed_as": str(job.id)},
            )
        return accepted(job)


class DeadLetterBulkReplayView(_DeadLetterOperation):
    @extend_schema(
        operation_id="dead_letters_bulk_replay",
        request=s.BulkReplaySerializer,
        responses={200: s.BulkReplayResultSerializer, **ERRORS},
        description="Replay the open dead letters matching the filters (at most "
        "`limit`). `dry_run` defaults to true: it counts; send false to replay.",
    )
    def post(self, request):
        body = s.BulkReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        letters = DeadLetter.objects.open()
        for field, lookup in (
            ("fingerprint", "fingerprint"),
            ("task", "job__task_name"),
            ("queue", "job__queue"),
            ("created_after", "created_at__gte"),
            ("created_before", "created_at__lt"),
        ):
            if field in data:
                letters = letters.filter(**{lookup: data[field]})
        ids = list(letters.order_by("created_at").values_list("id", flat=True)[: data["limit"]])
        if data["dry_run"]:
            return Response({"matched": len(ids), "replayed": [], "dry_run": True})
        with transaction.atomic():
            replayed = [replay(letter_id, user=request.user).id for letter_id in ids]
            record_request(
                request,
                "dead_letter.bulk_replay",
                ("dead_letter", "bulk"),
                before={"dead_letters": ids},
                after={"replayed_as": [str(job_id) for job_id in replayed]},
                reason=json.dumps({k: str(v) for k, v in data.items()}),
            )
        return Response({"matched": len(ids), "replayed": replayed, "dry_run": False})

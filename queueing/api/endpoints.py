"""Accepting a job over HTTP, once for every endpoint: the API's POST /jobs and each
app's own endpoints (``<app>/api.py``, mounted under /api/v1/queue/ by
queueing/api/urls.py).

``accept_job`` checks the caller may enqueue the task (its declared roles, else its
queue's permission), enqueues it in a transaction together with the audit event, and
answers 202 with the job and its URL in ``Location``. ``JobEndpoint`` is the view an app
mounts for one task: its body is the task's contract (the keyword arguments), so a bad
argument is a 400 naming the field, in the API's one error shape, and nothing is written.

    # billing/api.py
    from django.urls import path
    from queueing import JobEndpoint

    urlpatterns = [path("billing", JobEndpoint.as_view(task="billing.run_invoices"))]
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api import serializers as s
from queueing.api.contracts import api_tasks, contract_for, validate_arguments
from queueing.api.errors import Conflict
from queueing.api.throttles import GeneralThrottle, JobCreateThrottle, RefundRefusedCreations
from queueing.audit import record_request
from queueing.ledger.enqueue import EnqueueError, enqueue, resolve_queue
from queueing.models import ACTIVE_STATUSES, Job, JobStatus
from queueing.roles import may_enqueue_task, may_operate, may_override_queue, may_see_job

ERRORS = {code: OpenApiResponse(s.ErrorSerializer) for code in (400, 401, 403, 404, 429)}


def job_state(job: Job) -> dict[str, Any]:
    return {"status": job.status, "attempts": job.attempts, "run_at": job.run_at}


def accepted(job: Job, serializer: Any = s.JobSerializer) -> Response:
    response = Response(serializer(job).data, status=status.HTTP_202_ACCEPTED)
    response["Location"] = reverse("queue-api:job-detail", args=[job.id])
    return response


def api_task(name: str) -> Any:
    """The API-enabled task called ``name``; a 400 on ``task`` otherwise (an internal
    task gets the same answer as an unknown one)."""
    task = api_tasks().get(name)
    if task is None:
        raise serializers.ValidationError({"task": [f"no API-enabled task {name!r}"]})
    return task


def routed_queue(
    request: Request, task: Any, kwargs: dict[str, Any], queue: str | None = None
) -> str:
    """The queue the job goes to, after checking the caller may enqueue the task (on its
    own queue: naming another queue cannot widen the right) and, when the caller names
    another queue, may override it."""
    try:
        own = resolve_queue(task, None, [], kwargs)
        routed = resolve_queue(task, queue, [], kwargs)
    except EnqueueError as exc:
        raise serializers.ValidationError({"queue": [str(exc)]}) from None
    if not may_enqueue_task(request.user, task, own):
        raise PermissionDenied(f"your role may not enqueue {task.name} jobs")
    if routed != own and not may_override_queue(request.user):
        raise PermissionDenied(
            f"{task.name} runs on queue {own}; your role may not send it to another queue"
        )
    return routed


def scoped_unique_key(task: Any, queue: str, key: str | None) -> str | None:
    """A caller's unique key, scoped to the task and queue: two tasks (or one task on two
    queues) never share a key, so a key cannot reach an unrelated job."""
    return None if key is None else f"{task.name}@{queue}:{key}"


def _check_holder(request: Request, key: str, *, replace: bool) -> None:
    """The caller must be able to read the job holding ``key`` (and, to replace it,
    operate it); else a 409 that says nothing about that job."""
    holder = Job.objects.filter(unique_key=key, status__in=ACTIVE_STATUSES).first()
    if holder is None:
        return
    user = request.user
    owns = bool(user.pk) and holder.enqueued_by_id == user.pk
    if not may_see_job(user, holder) or (replace and not (owns or may_operate(user, holder))):
        raise Conflict("the unique key is held by a job you cannot access; choose another key")


def accept_job(request: Request, task: Any, kwargs: dict[str, Any], **options: Any) -> Response:
    """Enqueue ``task`` with checked ``kwargs`` for the caller: permission, enqueue and
    audit in one transaction, then 202 + Location. ``options``: enqueue's (queue,
    priority, countdown, run_at, unique_key, on_conflict, max_attempts)."""
    queue = routed_queue(request, task, kwargs, options.pop("queue", None))
    key = scoped_unique_key(task, queue, options.pop("unique_key", None))
    replace = options.get("on_conflict") == "replace"
    new_id = uuid.uuid4()
    replaced = None
    with transaction.atomic():
        if key is not None:
            if connection.vendor == "postgresql":
                # Enqueuers of one key take turns until this transaction ends (the
                # ledger's replace takes the same lock), so no holder can appear between
                # the check below and the insert. SQLite serialises its writers.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])
            _check_holder(request, key, replace=replace)
            replaced = _waiting_holder(key) if replace else None
        try:
            job = enqueue(
                task,
                (),
                kwargs,
                queue=queue,
                user=request.user,
                unique_key=key,
                job_id=new_id,
                **options,
            )
        except EnqueueError as exc:
            raise serializers.ValidationError({"request": [str(exc)]}) from None
        if job.id != new_id:  # the key's holder, kept
            if not may_see_job(request.user, job):  # it appeared after the check
                raise Conflict("the unique key is held by a job you cannot access")
            return deduplicated(job)
        if replaced is not None:
            record_request(
                request,
                "job.cancel",
                ("job", replaced),
                before={"status": "waiting"},
                after={"status": "cancelled", "replaced_by": str(job.id)},
                reason=f"replaced (unique key {key})",
            )
        record_request(request, "job.create", ("job", job.id), after=job_state(job))
    return accepted(job)


def _waiting_holder(key: str) -> uuid.UUID | None:
    """The waiting job a replace will cancel (for its own audit event)."""
    waiting = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)
    return (
        Job.objects.filter(unique_key=key, status__in=waiting).values_list("id", flat=True).first()
    )


def deduplicated(job: Job) -> Response:
    """200 (nothing new was created) with the job that holds the key, and its URL."""
    body = {**s.JobSerializer(job).data, "deduplicated": True}
    response = Response(body, status=status.HTTP_200_OK)
    response["Location"] = reverse("queue-api:job-detail", args=[job.id])
    return response


class _MayEnqueueTask(BasePermission):
    message = "your role may not enqueue this job"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        task = view.get_task()
        return may_enqueue_task(user, task, resolve_queue(task, None, [], {}))


class JobEndpoint(RefundRefusedCreations, APIView):
    """POST the task's arguments (its contract) to enqueue one job: 202 + Location."""

    task: str | None = None
    permission_classes = [_MayEnqueueTask]
    throttle_classes = [GeneralThrottle, JobCreateThrottle]

    def get_task(self) -> Any:
        if not self.task:
            raise TypeError("JobEndpoint.as_view(task='<app>.<name>') names its task")
        return api_task(self.task)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        """The task's contract: what the body is (drf-spectacular documents it)."""
        return contract_for(self.get_task())(*args, **kwargs)

    @extend_schema(responses={202: s.JobSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        task = self.get_task()
        return accept_job(request, task, validate_arguments(task, request.data, field=None))

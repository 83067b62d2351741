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

from typing import Any

from django.db import transaction
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
from queueing.api.throttles import GeneralThrottle, JobCreateThrottle
from queueing.audit import record_request
from queueing.ledger.enqueue import EnqueueError, enqueue, resolve_queue
from queueing.models import Job
from queueing.roles import may_enqueue_task

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
    """The queue the job goes to, after checking the caller may enqueue the task there
    (the same answer however the queue was chosen)."""
    try:
        routed = resolve_queue(task, queue, [], kwargs)
    except EnqueueError as exc:
        raise serializers.ValidationError({"queue": [str(exc)]}) from None
    if not may_enqueue_task(request.user, task, routed):
        raise PermissionDenied(f"your role may not enqueue {task.name} jobs")
    return routed


def accept_job(request: Request, task: Any, kwargs: dict[str, Any], **options: Any) -> Response:
    """Enqueue ``task`` with checked ``kwargs`` for the caller: permission, enqueue and
    audit in one transaction, then 202 + Location. ``options``: enqueue's (queue,
    priority, countdown, run_at, unique_key, on_conflict, max_attempts)."""
    queue = routed_queue(request, task, kwargs, options.pop("queue", None))
    with transaction.atomic():
        try:
            job = enqueue(task, (), kwargs, queue=queue, user=request.user, **options)
        except EnqueueError as exc:
            raise serializers.ValidationError({"request": [str(exc)]}) from None
        record_request(request, "job.create", ("job", job.id), after=job_state(job))
    return accepted(job)


class _MayEnqueueTask(BasePermission):
    message = "your role may not enqueue this job"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        task = view.get_task()
        return may_enqueue_task(user, task, resolve_queue(task, None, [], {}))


class JobEndpoint(APIView):
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

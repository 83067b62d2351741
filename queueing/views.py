"""A staff page that submits the demo task from a view and shows its result.

Staff alone is not enough: the user's role must allow the demo task (queueing.ping:
admin, manager, dispatcher), the enqueue records the user and an audit event, and the
status page shows only the user's own jobs (or every job, for view_all_jobs).

It is the end-to-end check of a fresh install: web → Redis → worker → result in the
database, visible here, in the results admin and in Flower.
"""

from __future__ import annotations

import uuid

from celery.result import AsyncResult
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from queueing.audit import record_request
from queueing.ledger.enqueue import enqueue
from queueing.models import Job
from queueing.roles import may_enqueue_task, may_see_job
from queueing.tasks import PING_MESSAGE_MAX_LENGTH, ping


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@staff_member_required
@require_http_methods(["GET", "POST"])
def demo(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "queueing/demo.html", {"max_length": PING_MESSAGE_MAX_LENGTH})

    message = request.POST.get("message", "").strip()
    error = None
    if not message:
        error = "message: this field is required"
    elif len(message) > PING_MESSAGE_MAX_LENGTH:
        error = f"message: at most {PING_MESSAGE_MAX_LENGTH} characters"
    if error:
        if _wants_json(request):
            return JsonResponse({"error": {"code": "invalid", "message": error}}, status=400)
        return render(
            request,
            "queueing/demo.html",
            {"max_length": PING_MESSAGE_MAX_LENGTH, "error": error, "message": message},
            status=400,
        )

    if not may_enqueue_task(request.user, ping, "default"):
        raise PermissionDenied("your role may not run the demo task")
    with transaction.atomic():
        job = enqueue(ping, [message], user=request.user)
        after = {"status": job.status}
        record_request(request, "job.create", ("job", job.id), after=after, reason="via demo page")
    status_url = reverse("queueing:demo-status", args=[job.id])
    if _wants_json(request):
        response = JsonResponse({"task_id": str(job.id), "status_url": status_url}, status=202)
        response["Location"] = status_url
        return response
    return redirect(status_url)


@staff_member_required
@require_http_methods(["GET"])
def demo_status(request: HttpRequest, task_id: str) -> HttpResponse:
    try:
        uuid.UUID(task_id)
    except ValueError:
        raise Http404("not a task id") from None
    job = Job.objects.filter(id=task_id).first()
    if job is None or not may_see_job(request.user, job):
        raise Http404("no such job of yours")  # another user's result is not shown
    result: AsyncResult[object] = AsyncResult(task_id)
    state = result.state
    payload = {
        "task_id": task_id,
        "state": state,
        "result": result.result if state == "SUCCESS" else None,
    }
    if _wants_json(request):
        return JsonResponse(payload)
    return render(request, "queueing/demo_status.html", payload)

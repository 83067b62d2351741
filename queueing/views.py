"""A staff-only page that submits the demo task from a view and shows its result.

It is the end-to-end check of a fresh install: web → Redis → worker → result in the
database, visible here, in the results admin and in Flower.
"""

from __future__ import annotations

import uuid

from celery.result import AsyncResult
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

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

    result = ping.delay(message)
    status_url = reverse("queueing:demo-status", args=[result.id])
    if _wants_json(request):
        response = JsonResponse({"task_id": result.id, "status_url": status_url}, status=202)
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

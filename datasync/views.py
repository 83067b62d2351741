"""POST /webhooks/<source>/: verify, store, enqueue, answer 202 (docs/webhooks.md)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from datasync.services import receive
from datasync.signatures import WebhookRejected


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": {}}}, status=status)


@csrf_exempt  # signed by the provider instead; there is no browser session here
@require_POST
def webhook(request: HttpRequest, source: str) -> JsonResponse:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > settings.WEBHOOK_MAX_BYTES:
        return _error(
            413, "request_too_large", f"the body is over {settings.WEBHOOK_MAX_BYTES} bytes"
        )
    body = request.body
    try:
        receipt = receive(source, request, body)
    except WebhookRejected as exc:
        return _error(exc.status, exc.code, str(exc))
    response = JsonResponse({"status": "accepted"}, status=202)
    if receipt.duplicate:
        response["X-Taskyard-Duplicate"] = "1"
    return response

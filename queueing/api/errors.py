"""One error shape for every API response: ``{"error": {"code", "message", "fields"}}``.

No traceback, SQL or exception text of an unexpected error reaches the client: it gets a
500 with a request reference, and the log has the details under that reference.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"args.message": ["..."]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else f"{prefix}.{key}" if prefix else key
            for field, messages in flatten_fields(value, str(name)).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if any(isinstance(item, dict | list) for item in detail):
            flat = {}
            for index, item in enumerate(detail):
                name = f"{prefix}[{index}]" if prefix else f"[{index}]"
                for field, messages in flatten_fields(item, name).items():
                    flat.setdefault(field, []).extend(messages)
            return flat
        return {prefix or "request": [str(item) for item in detail]}
    return {prefix or "request": [str(detail)]}


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_request",
}


class Conflict(exceptions.APIException):
    """The request is valid but the target's state forbids it (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "the target's current state does not allow this"


def exception_handler(exc: Exception, context: dict) -> Response:
    # Django's own 404 and 403 become DRF's, as DRF's handler does, before classifying.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, DjangoValidationError):
        # A model's own validation (django-celery-beat's unique name, say) is a 400.
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"request": exc.messages}
        exc = exceptions.ValidationError(fields)
    elif isinstance(exc, DataError):
        # The database refused a value taken from the request (a NUL byte in a filter,
        # a number out of range): the request is bad, not the server.
        exc = exceptions.ValidationError(
            {"request": ["a parameter holds a value the database cannot store"]}
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        reference = uuid.uuid4().hex[:12]
        request = context.get("request")
        logger.exception(
            "API error %s on %s %s",
            reference,
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
        )
        return Response(
            error_body("server_error", f"internal error (reference {reference})"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid", "the request has invalid fields", flatten_fields(exc.detail))
    else:
        code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            code = getattr(exc, "default_code", None) or "error"
        detail = getattr(exc, "detail", None)
        if isinstance(detail, dict | list):
            message, fields = "the request was refused", flatten_fields(detail)
        else:
            message, fields = str(detail or response.status_text), {}
        if code == "not_found" and not detail:
            message = "not found"
        body = error_body(code, message, fields)
    response.data = body
    return response


@csrf_exempt  # no state changes here; a POST to a wrong URL must get a 404, not a CSRF 403
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Unknown URLs under /api/ answer in the API's shape, not with an HTML page."""
    return JsonResponse(error_body("not_found", f"no API endpoint at {request.path}"), status=404)


QUEUE_API_PREFIX = "/api/v1/queue/"


def unknown_query_params(request: HttpRequest) -> list[str]:
    """Query parameters the queue API view does not take (its ``query_params``; none by
    default): a typo in a filter must be a 400, not a silently unfiltered answer."""
    if not request.path.startswith(QUEUE_API_PREFIX) or not request.GET:
        return []
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return []
    view = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    allowed: frozenset[str] = getattr(view, "query_params", frozenset())
    return sorted(set(request.GET) - set(allowed))


class ApiRequestGuardMiddleware:
    """Refuse an API request whose declared body exceeds API_MAX_REQUEST_BYTES with a
    413, before anything reads it; a query parameter the view does not take, or a NUL
    character in the URL, with a 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return JsonResponse(
                    error_body("malformed_request", "Content-Length is not a number"), status=400
                )
            limit = settings.API_MAX_REQUEST_BYTES
            if length > limit:
                return JsonResponse(
                    error_body(
                        "request_too_large",
                        f"request body of {length} bytes is over the limit of {limit} bytes",
                    ),
                    status=413,
                )
            unknown = unknown_query_params(request)
            if unknown:
                return JsonResponse(
                    error_body(
                        "invalid",
                        "the request has invalid fields",
                        {name: ["unknown query parameter"] for name in unknown},
                    ),
                    status=400,
                )
            if (
                "\x00" in request.path
                or "\x00" in request.META.get("QUERY_STRING", "")
                or any("\x00" in value for value in request.GET.values())
            ):
                # No database stores a NUL in text (PostgreSQL refuses it): a 400 on
                # every database, not a 500 on one of them.
                return JsonResponse(
                    error_body("malformed_request", "a NUL character is not allowed"), status=400
                )
        return self.get_response(request)

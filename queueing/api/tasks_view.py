"""GET /api/v1/queue/tasks: the tasks the caller may enqueue, each with its queue and the
JSON Schema of its arguments (from its Contract), so a client learns what it can run and
how without reading our code."""

from __future__ import annotations

import inspect
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api.contracts import api_tasks, contract_for
from queueing.api.endpoints import ERRORS
from queueing.ledger.enqueue import resolve_queue
from queueing.roles import may_enqueue_task, may_override_queue

# (field kind, its JSON Schema, the field's bounds as schema keywords), first match wins.
_KINDS: tuple[tuple[type, dict[str, Any], tuple[tuple[str, str], ...]], ...] = (
    (serializers.BooleanField, {"type": "boolean"}, ()),
    (
        serializers.IntegerField,
        {"type": "integer"},
        (("min_value", "minimum"), ("max_value", "maximum")),
    ),
    (
        serializers.FloatField,
        {"type": "number"},
        (("min_value", "minimum"), ("max_value", "maximum")),
    ),
    (serializers.DateTimeField, {"type": "string", "format": "date-time"}, ()),
    (serializers.DateField, {"type": "string", "format": "date"}, ()),
    (
        serializers.CharField,
        {"type": "string"},
        (("max_length", "maxLength"), ("min_length", "minLength")),
    ),
    (serializers.DictField, {"type": "object"}, ()),
)


def field_schema(field: serializers.Field) -> dict[str, Any]:
    """The JSON Schema of one contract field (the JSON types the contract accepts)."""
    schema: dict[str, Any] = {}
    if isinstance(field, serializers.ChoiceField):
        schema = {"enum": list(field.choices)}
    elif isinstance(field, serializers.ListField):
        schema = {"type": "array", "items": field_schema(field.child)}
    else:
        for kind, base, bounds in _KINDS:
            if isinstance(field, kind):
                schema = dict(base)
                for attribute, keyword in bounds:
                    if getattr(field, attribute, None) is not None:
                        schema[keyword] = getattr(field, attribute)
                break
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


def contract_schema(contract: type[serializers.Serializer[Any]]) -> dict[str, Any]:
    fields = contract().fields
    return {
        "type": "object",
        "properties": {name: field_schema(field) for name, field in fields.items()},
        "required": [name for name, field in fields.items() if field.required],
        "additionalProperties": False,
    }


class TasksView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request) -> Response:
        tasks = []
        for name, task in api_tasks().items():
            queue = resolve_queue(task, None, [], {})
            if not may_enqueue_task(request.user, task, queue):
                continue
            tasks.append(
                {
                    "task": name,
                    "queue": queue,
                    "description": inspect.cleandoc(task.__doc__ or "").split("\n\n")[0],
                    "args": contract_schema(contract_for(task)),
                }
            )
        return Response({"tasks": tasks, "may_choose_queue": may_override_queue(request.user)})

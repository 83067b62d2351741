"""Typed task contracts: which tasks the API may enqueue by name, and their arguments.

A task is API-enabled by naming a contract, a serializer of its keyword arguments::

    @shared_task(name="billing.run_invoices", api_contract="billing.serializers.RunArgs")

The API validates the request's ``args`` object against it before anything is written,
so bad arguments are a 400 with field errors and never reach a worker. Tasks without a
contract cannot be enqueued over HTTP at all (an unknown task and a task that is not
API-enabled get the same answer, so the API does not reveal internal task names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from celery import Task
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.module_loading import import_string
from rest_framework import serializers

from queueing.ledger import import_task_modules


class Contract(serializers.Serializer):
    """Base of task argument contracts: an unknown field is an error, not ignored."""

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["must be an object of named arguments"]}
            )
        unknown = sorted(set(data) - set(self.fields))
        value = super().to_internal_value(data)
        if unknown:
            raise serializers.ValidationError({name: ["unknown argument"] for name in unknown})
        return value


class PingArgs(Contract):
    """queueing.ping: the demo task."""

    message = serializers.CharField(max_length=200, required=False, allow_blank=False)


class NoArgs(Contract):
    """A task that takes no arguments."""


_modules_imported = False


def _app():
    """The Celery app, with every task module imported (a web process has not
    necessarily imported them yet; a worker has)."""
    global _modules_imported  # noqa: PLW0603
    from config.celery import app

    if not _modules_imported:
        import_task_modules()
        _modules_imported = True
    return app


def api_tasks() -> dict[str, Task]:
    """Registered tasks that name a contract, by name."""
    return {
        name: task
        for name, task in sorted(_app().tasks.items())
        if getattr(task, "api_contract", None)
    }


def contract_for(task: Task) -> type[Contract]:
    contract = task.api_contract
    return import_string(contract) if isinstance(contract, str) else contract


def validate_arguments(task: Task, data: Any) -> dict:
    """The task's keyword arguments, checked and JSON-ready; ValidationError otherwise
    (fields named ``args.<name>``)."""
    serializer = contract_for(task)(data=data if data is not None else {})
    if not serializer.is_valid():
        raise serializers.ValidationError({"args": serializer.errors})
    # Dates, decimals, UUIDs as the worker will receive them (JSON).
    return json.loads(json.dumps(serializer.validated_data, cls=DjangoJSONEncoder))

"""Typed task contracts: which tasks the API may enqueue by name, and their arguments.

A task is API-enabled by naming a contract, a serializer of its keyword arguments::

    @job(queue="billing", name="billing.run_invoices", api=RunArgs, roles=("manager",))

The API validates the request's ``args`` object against it before anything is written,
so bad arguments are a 400 with field errors and never reach a worker. Tasks without a
contract cannot be enqueued over HTTP at all (an unknown task and a task that is not
API-enabled get the same answer, so the API does not reveal internal task names).
"""

from __future__ import annotations

import json
from typing import Any

from celery import Task
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.module_loading import import_string
from rest_framework import serializers

from queueing.contracts import Contract
from queueing.ledger.enqueue import import_task_modules


class PingArgs(Contract):
    """queueing.ping: the demo task."""

    message = serializers.CharField(max_length=200, required=False, allow_blank=False)


class NoArgs(Contract):
    """A task that takes no arguments."""


class DailyReportArgs(Contract):
    """queueing.daily_report: (re)build one business day's report; default yesterday."""

    day = serializers.DateField(
        required=False,
        help_text="a business day that has ended and that the ledger still holds whole "
        "(finished jobs are kept 26 h); default: yesterday",
    )

    def validate_day(self, value: Any) -> Any:
        from queueing.observe.report import ReportUnavailable, check_buildable

        try:
            check_buildable(value)
        except ReportUnavailable as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


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


def declared_roles() -> set[str]:
    """Every role some API-enabled task names in ``job(roles=...)``."""
    return {
        role
        for task in api_tasks().values()
        for role in (getattr(task, "enqueue_roles", None) or ())
    }


def contract_for(task: Task) -> type[Contract]:
    """The task's contract class (a dotted path is imported on first use)."""
    contract = getattr(task, "api_contract", None)
    resolved = import_string(contract) if isinstance(contract, str) else contract
    if not (isinstance(resolved, type) and issubclass(resolved, Contract)):
        raise TypeError(f"task {task.name}: api contract {contract!r} is not a Contract")
    return resolved


def validate_arguments(task: Task, data: Any, *, field: str | None = "args") -> dict[str, Any]:
    """The task's keyword arguments, checked and JSON-ready; ValidationError otherwise,
    its fields under ``field`` (``args.<name>``), or top-level with ``field=None``."""
    serializer = contract_for(task)(data=data if data is not None else {})
    if not serializer.is_valid():
        raise serializers.ValidationError(
            {field: serializer.errors} if field else serializer.errors
        )
    # Dates, decimals, UUIDs as the worker will receive them (JSON).
    return json.loads(json.dumps(serializer.validated_data, cls=DjangoJSONEncoder))

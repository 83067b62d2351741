"""One way for an app to declare a job: ``queueing.job(...)``, checked at import.

    @job(queue="billing", retry={"max_attempts": 3}, unique_key="invoice:{invoice_id}",
         api=SendInvoiceArgs, roles=("manager",), atomic=True)
    def send_invoice(invoice_id: int) -> dict: ...

Every option is checked when the tasks module is imported, so a worker or a web process
with a misdeclared job does not start: the queue must be declared in TASKYARD_QUEUES, key
templates may only name the task's parameters, a named rate limit must exist, roles must
be roles, and Celery options that the ledger replaces (``max_retries``, ``autoretry_for``,
``retry_backoff``, a per-worker ``rate_limit``, ``acks_late``...) are refused with the
option to use instead. The result is an ordinary Celery task (``.delay()`` works) of the
platform's base class. The same check of Celery options runs for tasks declared with plain
``@shared_task`` (TaskyardTask.on_bound). How-to: docs/apps.md.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from queueing.ledger.keys import template_fields

# Celery task options the ledger does itself, and what to declare instead.
CONFLICTING_CELERY_OPTIONS = {
    "max_retries": "retry={'max_attempts': N}: the ledger counts attempts, not retries",
    "retry_kwargs": "retry={'max_attempts': N, 'base_delay': s, 'max_delay': s}",
    "default_retry_delay": "retry={'base_delay': seconds}",
    "retry_backoff": "retry={'base_delay': s, 'max_delay': s}: the ledger always backs off "
    "exponentially with full jitter",
    "retry_backoff_max": "retry={'max_delay': seconds}",
    "retry_jitter": "nothing: the ledger's backoff always has full jitter",
    "autoretry_for": "nothing to retry transient errors (the ledger retries every failure by "
    "its class, docs/job-ledger.md); permanent_for=(SomeError,) or raise PermanentError "
    "for failures that must not be retried",
    "dont_autoretry_for": "permanent_for=(SomeError,)",
    "acks_late": "nothing: the job's lease decides redelivery",
    "acks_on_failure_or_timeout": "nothing: the ledger records every outcome",
    "reject_on_worker_lost": "nothing: the job's lease brings back a killed worker's job",
    "serializer": "nothing: Taskyard sends JSON only",
    "base": "nothing: every job uses the platform's TaskyardTask",
    "routing_key": "queue='<a declared queue>'",
    "exchange": "queue='<a declared queue>'",
    "tracked": "plain @shared_task(tracked=False) for a task outside the ledger",
}
# Celery options job() passes through unchanged.
CELERY_OPTIONS = ("name", "bind", "time_limit", "soft_time_limit", "ignore_result")
JOB_OPTIONS = (
    "queue",
    "retry",
    "unique_key",
    "concurrency_key",
    "concurrency_limit",
    "rate_limit",
    "api",
    "roles",
    "atomic",
    "priority",
    "permanent_for",
    "providers",
)
RETRY_FIELDS = ("max_attempts", "base_delay", "max_delay")
# Names a newcomer tries (the base class's attribute names, Oban/Sidekiq words) and the
# option that does it.
OPTION_HINTS = {
    "max_attempts": "retry={'max_attempts': N}",
    "retry_base_delay": "retry={'base_delay': seconds}",
    "retry_max_delay": "retry={'max_delay': seconds}",
    "rate_limit_key": "rate_limit='<name in TASKYARD_RATE_LIMITS>'",
    "concurrency": "concurrency_key='<template>', concurrency_limit=N",
    "api_contract": "api=<Contract>",
    "enqueue_roles": "roles=(...)",
    "unique": "unique_key='<template>'",
}
# What a per-worker Celery rate ("10/m", "5/s") looks like, to explain the difference.
_CELERY_RATE = re.compile(r"^\s*\d+(\.\d+)?\s*/\s*\d*\s*[smh]\s*$")


class JobDeclarationError(ImproperlyConfigured):
    """A job declared with an option that cannot work; the message names the fix."""


def job(
    fn: Callable[..., Any] | None = None, **options: Any
) -> Any:  # a Celery task, or a decorator making one
    """Declare ``fn`` as a tracked job. Options (all keyword):

    queue             a queue of TASKYARD_QUEUES (required); routing always honours it
    retry             {"max_attempts", "base_delay", "max_delay"}: overrides the queue's
    unique_key        template filled from the arguments, e.g. "invoice:{invoice_id}": a
                      second enqueue while one is active returns the active job
    concurrency_key   template; at most ``concurrency_limit`` (default 1) such jobs run
    rate_limit        the name of a global limit in TASKYARD_RATE_LIMITS ("sendgrid")
    api               a Contract (or its dotted path): the job may be enqueued over HTTP
    roles             role names that may enqueue it over the API (admin always may)
    atomic            run the body and record its success in one transaction
    priority          0 (most urgent) - 9
    permanent_for     exception classes never retried (besides PermanentError)
    providers         names of TASKYARD_PROVIDERS it calls: held unclaimed while one is
                      open or cooling down after a 429 (docs/providers.md)
    name, bind, time_limit, soft_time_limit, ignore_result   as in Celery
    """
    if fn is not None and not callable(fn):
        raise JobDeclarationError("job() takes keyword options only, e.g. @job(queue='billing')")

    def declare(function: Callable[..., Any]) -> Any:
        where = f"job {function.__module__}.{function.__qualname__}"
        task_options = task_options_for(function, options, where)
        return shared_task(**task_options)(function)

    return declare(fn) if fn is not None else declare


def task_options_for(
    function: Callable[..., Any], options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """The Celery task options for ``options``, or JobDeclarationError naming the fix."""
    refuse_unknown(options, where)
    if "queue" not in options:
        raise JobDeclarationError(
            f"{where}: name its queue, e.g. queue='default'; declared queues: "
            f"{', '.join(settings.TASKYARD_QUEUES)}"
        )
    queue = options["queue"]
    if queue not in settings.TASKYARD_QUEUES:
        raise JobDeclarationError(
            f"{where}: queue {queue!r} is not declared; use one of "
            f"{', '.join(settings.TASKYARD_QUEUES)} or declare it in TASKYARD_QUEUES"
        )
    bind = bool(options.get("bind", False))
    parameters = _parameters(function, bind)
    # Not Celery's ``queue`` attribute (deprecated by Celery, ignored by the ledger's
    # publish): resolve_queue reads declared_queue.
    result: dict[str, Any] = {"declared_queue": queue, "declared": True, "bind": bind}
    for key in ("name", "time_limit", "soft_time_limit", "ignore_result"):
        if key in options:
            result[key] = options[key]
    result.update(_retry(options.get("retry"), where))
    result.update(_limits(options, parameters, where))
    result.update(_api(options, parameters, where))
    result.update(_flags(options, where))
    _check_time_limits(result, where)
    return result


def _limits(options: Mapping[str, Any], parameters: set[str] | None, where: str) -> dict[str, Any]:
    """Unique key, concurrency key and limit, named rate limit."""
    result: dict[str, Any] = {}
    for key in ("unique_key", "concurrency_key"):
        template = options.get(key)
        if template is not None:
            result[key] = _template(template, parameters, key, where)
    if "concurrency_limit" in options:
        limit = options["concurrency_limit"]
        if "concurrency_key" not in options:
            raise JobDeclarationError(f"{where}: concurrency_limit needs a concurrency_key")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise JobDeclarationError(f"{where}: concurrency_limit must be an integer >= 1")
        result["concurrency_limit"] = limit
    if options.get("rate_limit") is not None:
        result["rate_limit_key"] = _rate_limit(options["rate_limit"], where)
    return result


def _api(options: Mapping[str, Any], parameters: set[str] | None, where: str) -> dict[str, Any]:
    """The API contract and the roles that may enqueue over the API."""
    result: dict[str, Any] = {}
    if options.get("api") is not None:
        result["api_contract"] = _contract(options["api"], parameters, where)
    if "roles" in options:
        if options.get("api") is None:
            raise JobDeclarationError(
                f"{where}: roles say who may enqueue it over the API; give api=<Contract> too"
            )
        result["enqueue_roles"] = _roles(options["roles"], where)
    elif options.get("api") is not None:
        raise JobDeclarationError(
            f"{where}: an API-enabled job names who may enqueue it: roles=('manager', ...), "
            "or roles=() for admins only"
        )
    return result


def _flags(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """atomic, priority, permanent_for."""
    result: dict[str, Any] = {}
    if "atomic" in options:
        if not isinstance(options["atomic"], bool):
            raise JobDeclarationError(f"{where}: atomic must be True or False")
        result["atomic"] = options["atomic"]
    if options.get("priority") is not None:
        priority = options["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
            raise JobDeclarationError(f"{where}: priority must be an integer 0-9")
        result["declared_priority"] = priority
    if "permanent_for" in options:
        result["permanent_for"] = _exception_types(options["permanent_for"], where)
    if "providers" in options:
        result["providers"] = _providers(options["providers"], where)
    return result


def _providers(raw: Any, where: str) -> tuple[str, ...]:
    from queueing.specs import provider_specs

    return _known_names(raw, provider_specs(), "provider(s)", "TASKYARD_PROVIDERS declares", where)


def _known_names(
    raw: Any, known: Iterable[str], what: str, listing: str, where: str
) -> tuple[str, ...]:
    """``raw`` (a name or names) as a tuple, every one of them in ``known``."""
    names = (raw,) if isinstance(raw, str) else tuple(raw or ())
    known = list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise JobDeclarationError(
            f"{where}: unknown {what} {', '.join(map(repr, unknown))}; "
            f"{listing}: {', '.join(known) or 'none'}"
        )
    return names


def refuse_unknown(options: Iterable[str], where: str) -> None:
    """Conflicting Celery options, then unknown ones (with the nearest known name)."""
    for key in options:
        if key in CONFLICTING_CELERY_OPTIONS:
            raise JobDeclarationError(
                f"{where}: Celery's {key!r} conflicts with the job ledger; use "
                f"{CONFLICTING_CELERY_OPTIONS[key]}"
            )
    known = (*JOB_OPTIONS, *CELERY_OPTIONS)
    for key in options:
        if key in OPTION_HINTS:
            raise JobDeclarationError(f"{where}: unknown option {key!r}; use {OPTION_HINTS[key]}")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise JobDeclarationError(
                f"{where}: unknown option {key!r}; {hint}known: {', '.join(sorted(known))}"
            )


def _parameters(function: Callable[..., Any], bind: bool) -> set[str] | None:
    """The names the task's arguments bind to; None when it takes **kwargs."""
    params = list(inspect.signature(function).parameters.values())
    if bind:
        params = params[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _retry(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise JobDeclarationError(f"{where}: retry must be a dict of {', '.join(RETRY_FIELDS)}")
    unknown = set(raw) - set(RETRY_FIELDS)
    if unknown:
        raise JobDeclarationError(
            f"{where}: retry takes only {', '.join(RETRY_FIELDS)}, not {', '.join(sorted(unknown))}"
        )
    for key, value in raw.items():
        minimum = 1 if key == "max_attempts" else 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise JobDeclarationError(f"{where}: retry {key} must be a number >= {minimum}")
    if "max_attempts" in raw and not isinstance(raw["max_attempts"], int):
        raise JobDeclarationError(f"{where}: retry max_attempts must be an integer")
    names = {"max_attempts": "max_attempts", "base_delay": "retry_base_delay"}
    names["max_delay"] = "retry_max_delay"
    return {names[key]: value for key, value in raw.items()}


def _template(template: Any, parameters: set[str] | None, key: str, where: str) -> str:
    if not isinstance(template, str) or not template.strip():
        raise JobDeclarationError(f"{where}: {key} must be a template string, e.g. 'id:{{id}}'")
    try:
        fields = template_fields(template)
    except (ImproperlyConfigured, ValueError) as exc:
        raise JobDeclarationError(f"{where}: {key}: {exc}") from None
    if parameters is not None:
        missing = [name for name in fields if name not in parameters]
        if missing:
            raise JobDeclarationError(
                f"{where}: {key} {template!r} names {', '.join(missing)}, which the task does "
                f"not take; its arguments are: {', '.join(sorted(parameters)) or 'none'}"
            )
    return template


def _rate_limit(name: Any, where: str) -> str:
    limits = settings.TASKYARD_RATE_LIMITS
    if isinstance(name, str) and name in limits:
        return name
    if isinstance(name, str) and _CELERY_RATE.match(name):
        raise JobDeclarationError(
            f"{where}: rate_limit names a global limit of TASKYARD_RATE_LIMITS, not a rate: "
            f"Celery's {name!r} would hold per worker. Add it there, e.g. "
            f"'my-limit': {name!r}, and declare rate_limit='my-limit'"
        )
    raise JobDeclarationError(
        f"{where}: rate limit {name!r} is not in TASKYARD_RATE_LIMITS; known: "
        f"{', '.join(limits) or 'none'}"
    )


def _contract(contract: Any, parameters: set[str] | None, where: str) -> Any:
    if isinstance(contract, str):
        return contract  # a dotted path, imported when the API first needs it
    from queueing.contracts import Contract

    if not (isinstance(contract, type) and issubclass(contract, Contract)):
        raise JobDeclarationError(
            f"{where}: api must be a queueing.Contract subclass (or its dotted path), "
            f"not {contract!r}"
        )
    if parameters is not None:
        extra = sorted(set(contract._declared_fields) - parameters)
        if extra:
            raise JobDeclarationError(
                f"{where}: api contract {contract.__name__} has field(s) {', '.join(extra)} "
                "that the task does not take"
            )
    return contract


def _roles(raw: Any, where: str) -> tuple[str, ...]:
    from queueing.roles import ROLE_PERMISSIONS

    return _known_names(raw, ROLE_PERMISSIONS, "role(s)", "roles", where)


def _exception_types(raw: Any, where: str) -> tuple[type[BaseException], ...]:
    types = raw if isinstance(raw, tuple | list) else (raw,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise JobDeclarationError(f"{where}: permanent_for must be exception classes")
    return tuple(types)


def _check_time_limits(result: Mapping[str, Any], where: str) -> None:
    hard, soft = result.get("time_limit"), result.get("soft_time_limit")
    for key, value in (("time_limit", hard), ("soft_time_limit", soft)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise JobDeclarationError(f"{where}: {key} must be a positive number of seconds")
    if hard is not None and soft is not None and soft >= hard:
        raise JobDeclarationError(f"{where}: soft_time_limit must be below time_limit")


# Attributes Celery itself puts in the class it makes for a decorated function.
_CELERY_CLASS_ATTRIBUTES = frozenset(
    {
        "app",
        "name",
        "run",
        "_decorated",
        "__doc__",
        "__module__",
        "__annotations__",
        "__header__",
        "__wrapped__",
        "__qualname__",
        "__dict__",
        "__weakref__",
        "typing",
        "_decorated_fun",
        "_dump_pydantic_arguments",
    }
)


def check_task_class(cls: Any, conf: Mapping[str, Any]) -> None:
    """For a tracked task made by @shared_task/@app.task: options that conflict with the
    ledger, or that no task has (a typo), are refused when the task is registered.
    ``conf`` is the app's configuration: Celery copies its task defaults onto the class
    (Task.from_config) before this runs, and those are not the task's own options."""
    name = cls.__dict__.get("name") or ""
    if cls.__dict__.get("declared") or not cls.__dict__.get("_decorated"):
        return
    if name.startswith("celery.") or not getattr(cls, "tracked", True):
        return
    where = f"task {name}"
    from_config = dict(cls.from_config)
    own = [
        key
        for key, value in cls.__dict__.items()
        if key not in _CELERY_CLASS_ATTRIBUTES
        and not (key in from_config and value == conf.get(from_config[key]))
    ]
    for key in own:
        if key in CONFLICTING_CELERY_OPTIONS and key != "tracked":
            raise JobDeclarationError(
                f"{where}: Celery's {key!r} conflicts with the job ledger; use "
                f"{CONFLICTING_CELERY_OPTIONS[key]} (declare it with queueing.job)"
            )
    if cls.__dict__.get("rate_limit") is not None:
        raise JobDeclarationError(
            f"{where}: Celery's rate_limit holds per worker; declare a global limit in "
            "TASKYARD_RATE_LIMITS and name it with queueing.job(rate_limit='<name>')"
        )
    bases = cls.__mro__[1:]
    for key in own:
        if key != "queue" and not any(key in vars(base) for base in bases):
            raise JobDeclarationError(
                f"{where}: unknown task option {key!r}; declare the task with queueing.job(...) "
                "to have its options checked"
            )

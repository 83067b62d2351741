"""Keys filled from a job's arguments: unique keys and concurrency keys.

A task declares a template such as ``"invoice:{invoice_id}"``; each job fills it from its
own arguments, bound to the task's signature, so positional and keyword calls give the
same key. The declaration checks at import that every name the template uses is a
parameter of the task (queueing/worker/declaration.py); enqueue fills it.
"""

from __future__ import annotations

import inspect
import string
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def template_fields(template: str) -> list[str]:
    """The argument names a key template uses, in order ("{a}:{b.c}" -> ["a", "b"])."""
    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ImproperlyConfigured(
                f"key template {template!r}: name the argument ({{customer_id}}), "
                "not a position ({} or {0})"
            )
        names.append(root)
    return names


def fill_key(task: Any, attribute: str, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The task's key template ``attribute`` (``concurrency_key``, ``unique_key``) filled
    from the job's arguments, e.g. "billing:{customer_id}" -> "billing:42"; None when
    the task declares none. ImproperlyConfigured when the arguments lack a name."""
    template = getattr(task, attribute, None)
    if not template:
        return None
    try:
        named = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except TypeError:
        named = dict(kwargs)
    try:
        return str(template.format(*args, **named))
    except (IndexError, KeyError, AttributeError) as exc:
        raise ImproperlyConfigured(
            f"task {task.name}: {attribute} {template!r} needs argument {exc}"
        ) from None


def concurrency_key_for(task: Any, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The task's ``concurrency_key`` filled from the job's arguments."""
    return fill_key(task, "concurrency_key", args, kwargs)

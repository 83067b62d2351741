"""Handlers of inbound webhook events, registered by the apps per (source, event type).

    # billing/webhook_handlers.py  (discovered in every installed app)
    from datasync.inbound import handles

    @handles("stripe", "payment_intent.succeeded", "payment_intent.payment_failed")
    def record_payment(event) -> None:
        ...

A handler gets the WebhookEvent and runs inside its processing job (queue external-api),
so it follows the job's retry policy: raise to retry, PermanentError when retrying cannot
help. An event type without a handler is kept and marked unhandled; ``"*"`` handles every
type of a source that has no handler of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import autodiscover_modules

Handler = Callable[[Any], object]

HANDLER_MODULE = "webhook_handlers"
_handlers: dict[tuple[str, str], Handler] = {}
_discovered = False


def handles(source: str, *event_types: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for ``source`` events of ``event_types``."""
    if not event_types:
        raise TypeError("handles(source, *event_types) needs at least one event type")

    def register(function: Handler) -> Handler:
        for event_type in event_types:
            existing = _handlers.get((source, event_type))
            if existing is not None and existing is not function:
                raise ValueError(
                    f"{source} {event_type} is already handled by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
            _handlers[(source, event_type)] = function
        return function

    return register


def handler_for(source: str, event_type: str) -> Handler | None:
    global _discovered  # noqa: PLW0603 - discovery runs once per process
    if not _discovered:
        autodiscover_modules(HANDLER_MODULE)
        _discovered = True
    return _handlers.get((source, event_type)) or _handlers.get((source, "*"))

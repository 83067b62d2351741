"""The platform core: job tracking, enqueue, retry policy, dead letters, queue control.

This module is the whole public surface a domain app uses (``from queueing import …``);
``make lint`` refuses imports of the subpackages from anywhere else. docs/apps.md shows
how an app declares its jobs, endpoints and schedules with these names.

    job(...)             declare a task: queue, retry, unique key, limits, API contract,
                         roles, atomic (checked at import; queueing/worker/declaration.py)
    enqueue(task, ...)   insert a job in the caller's transaction, publish after commit
    enqueue_many(task, args_list, ...)
                         many jobs of one task: one transaction, multi-row INSERTs,
                         one publish round trip (also ``SomeTask.bulk(args_list)``)
    explain(job)         why a job is not running, as reason codes
    Contract             base serializer of a task's API arguments (unknown fields refused)
    JobEndpoint          an app's POST endpoint that validates and enqueues one task
    PermanentError, TransientError, RateLimited, JobCancelled, EnqueueError,
    JobDeclarationError  a job() declaration that cannot work (at import)
    Job, JobStatus       the ledger's model and statuses
    provider_call(name)  guard one call to a third-party provider (docs/providers.md);
                         ProviderDeferred when it must wait (no attempt spent)
    validate_arguments(task, data, field=)
                         a task's keyword arguments checked by its API contract
                         (rest_framework ValidationError with field messages)
    confirm_action, may_enqueue, audit_enqueued
                         for an app's admin action that starts jobs: the confirmation
                         page, the API's enqueue rule, the "job.create" audit event
    record_request(request, action, target, before=, after=, reason=)
                         append an operator's action (admin, API) to the hash-chained
                         audit trail, in the caller's transaction

Names resolve on first use (PEP 562), so ``import queueing`` works before Django is set
up; the submodules do the work. The layout is described in docs/job-ledger.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from queueing.admin import audit_enqueued, confirm_action, may_enqueue
    from queueing.api.contracts import validate_arguments
    from queueing.api.endpoints import JobEndpoint
    from queueing.audit import record_request
    from queueing.contracts import Contract
    from queueing.control.breaker import ProviderDeferred
    from queueing.control.operations import JobCancelled
    from queueing.control.providers import provider_call
    from queueing.ledger.bulk import enqueue_many
    from queueing.ledger.enqueue import EnqueueError, enqueue
    from queueing.ledger.retry import PermanentError, RateLimited, TransientError
    from queueing.models import Job, JobStatus
    from queueing.observe.explain import explain
    from queueing.worker.declaration import JobDeclarationError, job

# public name -> the module that defines it
_EXPORTS = {
    "job": "queueing.worker.declaration",
    "enqueue": "queueing.ledger.enqueue",
    "enqueue_many": "queueing.ledger.bulk",
    "EnqueueError": "queueing.ledger.enqueue",
    "JobDeclarationError": "queueing.worker.declaration",
    "explain": "queueing.observe.explain",
    "Contract": "queueing.contracts",
    "JobEndpoint": "queueing.api.endpoints",
    "PermanentError": "queueing.ledger.retry",
    "TransientError": "queueing.ledger.retry",
    "RateLimited": "queueing.ledger.retry",
    "JobCancelled": "queueing.control.operations",
    "provider_call": "queueing.control.providers",
    "ProviderDeferred": "queueing.control.breaker",
    "Job": "queueing.models",
    "validate_arguments": "queueing.api.contracts",
    "confirm_action": "queueing.admin",
    "may_enqueue": "queueing.admin",
    "audit_enqueued": "queueing.admin",
    "JobStatus": "queueing.models",
    "record_request": "queueing.audit",
}

__all__ = [
    "Contract",
    "EnqueueError",
    "Job",
    "JobCancelled",
    "JobDeclarationError",
    "JobEndpoint",
    "JobStatus",
    "PermanentError",
    "ProviderDeferred",
    "RateLimited",
    "TransientError",
    "audit_enqueued",
    "confirm_action",
    "enqueue",
    "enqueue_many",
    "explain",
    "job",
    "may_enqueue",
    "provider_call",
    "record_request",
    "validate_arguments",
]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'queueing' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

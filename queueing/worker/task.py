"""The base class of every Taskyard task (``Celery(task_cls=...)`` in config/celery.py).

It makes every task of the project tracked by the job ledger:

- ``delay()`` / ``apply_async()`` go through ``queueing.ledger.enqueue.enqueue``: a Job row in the
  caller's transaction, the message published after commit.
- On the worker, ``__call__`` claims the job (or adopts a message published without the
  ledger), keeps its lease while the body runs, and records the outcome under the fencing
  token; a failure goes through the retry policy to ``retrying`` or ``dead``.

Celery's own tasks (``celery.*``: chord_unlock, backend_cleanup...) and tasks declared with
``tracked = False`` keep plain Celery behaviour. See docs/job-ledger.md.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Task
from celery.exceptions import Ignore, Retry
from django.db import transaction

from queueing.broker import LEDGER_HEADER

logger = logging.getLogger(__name__)


# Celery re-sends a task whose pool process died (task_retry_on_worker_lost) after
# ``default_retry_delay`` seconds. For tracked tasks the ledger's lease decides instead
# (the re-sent message is dropped by the claim), so this only matters for untracked ones,
# where Celery's 3-minute default leaves a killed task idle for no reason.
WORKER_LOST_RETRY_DELAY_SECONDS = 5

# Celery state a task reports with self.progress() (shown by Flower and AsyncResult).
PROGRESS_STATE = "PROGRESS"

# apply_async options that the ledger models itself.
_LEDGER_OPTIONS = (
    "queue",
    "priority",
    "countdown",
    "eta",
    "unique_key",
    "on_conflict",
    "max_attempts",
)


class RetryRequested(Exception):
    """Raised by TaskyardTask.retry(): the ledger schedules the next attempt."""

    def __init__(self, exc: BaseException | None, countdown: float | None):
        super().__init__(repr(exc) if exc else "retry requested")
        self.exc = exc
        self.countdown = countdown


class TaskyardTask(Task):
    default_retry_delay = WORKER_LOST_RETRY_DELAY_SECONDS
    #: Set False on a task to opt out of the ledger (plain Celery semantics).
    tracked = True
    #: Run the body and the recording of its success in one database transaction, so
    #: the body's own writes commit exactly once, only under a valid lease.
    atomic = False
    #: Global concurrency limit: at most ``concurrency_limit`` jobs with the same key run
    #: at once across all workers, e.g. ``concurrency_key = "billing:{customer_id}"``
    #: (filled from the job's arguments). Lease-bound: a dead worker frees its slot.
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    #: A named global rate limit from settings.TASKYARD_RATE_LIMITS (queueing/control/limits.py).
    rate_limit_key: str | None = None
    #: Override the queue's retry defaults (queueing.ledger.retry.RetryPolicy).
    max_attempts: int | None = None
    retry_base_delay: float | None = None
    retry_max_delay: float | None = None
    #: A unique-key template filled from the job's arguments ("invoice:{invoice_id}"),
    #: used when the caller passes no unique_key.
    unique_key: str | None = None
    #: Exceptions never retried, besides PermanentError and HTTP 4xx.
    permanent_for: tuple[type[BaseException], ...] = ()
    #: The API contract (a queueing.Contract): absent, the job is not enqueueable over HTTP.
    api_contract: Any = None
    #: Roles that may enqueue it over the API (besides enqueue_any); None: the queue's
    #: enqueue permission decides.
    enqueue_roles: tuple[str, ...] | None = None
    #: Declared with queueing.job() (its options were checked there).
    declared = False
    #: Providers the job calls (job(providers=...)): held unclaimed while one is open.
    providers: tuple[str, ...] = ()
    #: job(queue=...) and job(priority=...).
    declared_queue: str | None = None
    declared_priority: int | None = None

    @classmethod
    def on_bound(cls, app) -> None:
        """Refuse Celery options that the ledger replaces, and typos, on tracked tasks
        declared with plain @shared_task (job() checks its own at import)."""
        super().on_bound(app)
        from queueing.worker.declaration import check_task_class

        check_task_class(cls, app.conf)

    @property
    def is_tracked(self) -> bool:
        return bool(self.tracked) and not self.name.startswith("celery.")

    # A tracked job's success is stored with its outcome, in one statement
    # (queueing/ledger/fused.py): Celery must not store it a second time. Its failures
    # and retries are still stored by Celery (hence store_errors_even_if_ignored).
    # Properties, so that a task declared with ignore_result=... keeps its own choice.
    @property
    def ignore_result(self) -> bool:  # type: ignore[override]
        return self.is_tracked

    @property
    def store_errors_even_if_ignored(self) -> bool:  # type: ignore[override]
        return self.is_tracked

    # --- client side ---------------------------------------------------------------

    def apply_async(
        self,
        args=None,
        kwargs=None,
        task_id=None,
        producer=None,
        link=None,
        link_error=None,
        shadow=None,
        **options,
    ):
        if not self.is_tracked or self.app.conf.task_always_eager:
            return super().apply_async(
                args, kwargs, task_id, producer, link, link_error, shadow, **options
            )
        from queueing.ledger.enqueue import enqueue
        from queueing.ledger.transitions import job_exists

        if task_id and job_exists(task_id):
            # Celery re-sending a job the ledger already has (its worker-lost retry):
            # publish only; the claim drops it unless the job is really queued.
            return super().apply_async(
                args, kwargs, task_id, producer, link, link_error, shadow, **options
            )
        ledger = {key: options.pop(key, None) for key in _LEDGER_OPTIONS}
        for key, value in (("link", link), ("link_error", link_error), ("shadow", shadow)):
            if value is not None:
                options[key] = value
        job = enqueue(
            self,
            args or (),
            kwargs or {},
            queue=ledger["queue"],
            priority=ledger["priority"],
            run_at=ledger["eta"],
            countdown=ledger["countdown"],
            unique_key=ledger["unique_key"],
            on_conflict=ledger["on_conflict"] or "keep",
            max_attempts=ledger["max_attempts"],
            job_id=task_id,
            options=options,
        )
        return self.AsyncResult(str(job.id))

    def bulk(self, args_list, kwargs_list=None, **options) -> list:
        """Enqueue one job of this task per entry of ``args_list`` in one go (one
        transaction, multi-row INSERTs, one publish round trip): see
        ``queueing.enqueue_many`` for the options. Tracked tasks only."""
        if not self.is_tracked:
            raise TypeError(f"{self.name} is not tracked: use a Celery group instead")
        from queueing.ledger.bulk import enqueue_many

        return enqueue_many(self, args_list, kwargs_list=kwargs_list, **options)

    # --- worker side ---------------------------------------------------------------

    @property
    def job_id(self) -> str | None:
        claim = getattr(self.request, "taskyard_claim", None)
        return claim.job_id if claim else None

    @property
    def fencing_token(self) -> int | None:
        """The token of the running attempt; guard your own writes with it (or use
        :meth:`assert_lease` inside a transaction)."""
        claim = getattr(self.request, "taskyard_claim", None)
        return claim.token if claim else None

    @property
    def attempt(self) -> int | None:
        claim = getattr(self.request, "taskyard_claim", None)
        return claim.attempt if claim else None

    def assert_lease(self) -> None:
        """Inside ``transaction.atomic()``: raise LeaseLost unless this attempt still holds
        the job. Locks the job row until the transaction ends."""
        from queueing.ledger.transitions import assert_lease

        claim = getattr(self.request, "taskyard_claim", None)
        if claim is not None:
            assert_lease(claim)

    def lease_lost(self) -> bool:
        """True once the lease was taken over: a long task should stop early."""
        from queueing.ledger.transitions import LeaseKeeper

        claim = getattr(self.request, "taskyard_claim", None)
        return claim is not None and LeaseKeeper.get().is_lost(claim)

    def is_cancelled(self) -> bool:
        """True once an operator asked this job to stop (queueing.control.operations.cancel). A long
        task checks it between steps and raises JobCancelled (or returns)."""
        from queueing.ledger.transitions import is_cancel_requested

        claim = getattr(self.request, "taskyard_claim", None)
        return claim is not None and is_cancel_requested(claim)

    def progress(self, percent: float, message: str = "") -> bool:
        """Report progress (0-100) on the job and as Celery state PROGRESS for Flower.
        Throttled: at most one write per PROGRESS_MIN_INTERVAL_SECONDS, except 100 %.
        Returns whether it was written."""
        from queueing.control.operations import PROGRESS_MIN_INTERVAL_SECONDS
        from queueing.ledger.transitions import record_progress

        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError(f"percent must be a number, not {percent!r}")
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0-100, not {percent}")
        claim = getattr(self.request, "taskyard_claim", None)
        if claim is None:
            return False
        now = time.monotonic()
        last = getattr(self.request, "taskyard_progress_at", None)
        if last is not None and now - last < PROGRESS_MIN_INTERVAL_SECONDS and percent < 100:
            return False
        # Celery's Context takes any attribute; its stub lists Celery's own only.
        self.request.taskyard_progress_at = now  # type: ignore[attr-defined]
        if not record_progress(claim, float(percent), str(message)):
            return False
        self.update_state(state=PROGRESS_STATE, meta={"percent": percent, "message": message})
        return True

    def retry(
        self,
        args=None,
        kwargs=None,
        exc=None,
        throw=True,
        eta=None,
        countdown=None,
        max_retries=None,
        **options,
    ):
        """Ask for another attempt; the ledger schedules it (no ETA message in RAM)."""
        if not self.is_tracked or getattr(self.request, "taskyard_claim", None) is None:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        if eta is not None and countdown is None:
            from django.utils import timezone

            countdown = max(0.0, (eta - timezone.now()).total_seconds())
        raise RetryRequested(exc, countdown)

    def __call__(self, *args, **kwargs):
        if self.request.called_directly:  # a plain function call, not a delivery
            return super().__call__(*args, **kwargs)
        if not self.is_tracked or self.request.is_eager:
            # The worker already pushed this delivery's request; Task.__call__ would
            # push an empty one over it.
            return self.run(*args, **kwargs)
        from queueing.control.pause import is_paused, put_back

        request = self.request
        owner = f"{request.hostname}/{os.getpid()}"
        queue = (request.delivery_info or {}).get("routing_key") or ""
        # A plain job's claim checks the pause itself (no round trip); a job with limits
        # checks first, so that a paused queue's delivery takes no rate or slot.
        from queueing.control.limits import limits_for

        named_limits = limits_for(self, queue)
        if (named_limits or self.concurrency_key or self.providers) and (
            queue and is_paused(queue)
        ):
            put_back(request.id)
            raise Ignore()
        self._wait_for_rate_limits(request.id, named_limits)
        self._wait_for_providers(request.id)
        slot = self._take_concurrency_slot(request.id, args, kwargs)
        try:
            return self._claim_and_run(request, owner, queue, slot, args, kwargs)
        finally:
            # Only the delivery that claimed the job held its slot; a duplicate delivery
            # of a running job must not free the slot under it.
            if slot is not None and getattr(request, "taskyard_claim", None) is not None:
                slot[0].release(slot[1], request.id)

    def _claim_and_run(self, request, owner, queue, slot, args, kwargs):
        from queueing.control.breaker import ProviderDeferred
        from queueing.control.operations import JobCancelled
        from queueing.ledger import transitions as execution

        claim = execution.on_new_connection_if_dropped(
            request.id, "claim", lambda: execution.claim(request.id, owner)
        )
        from_ledger = bool(request.get(LEDGER_HEADER))
        if claim is None and not from_ledger and not execution.job_exists(request.id):
            claim = execution.adopt(request.id, self, list(args), dict(kwargs), queue, owner)
        if claim is None:
            if execution.is_held_by_pause(request.id):
                from queueing.control.pause import put_back

                put_back(request.id)
                raise Ignore()
            logger.info("job %s: delivery dropped, the job is not queued", request.id)
            raise Ignore()
        request.taskyard_claim = claim
        keeper = execution.LeaseKeeper.get()
        keeper.watch(claim, on_renew=self._slot_renewer(slot, claim))
        try:
            value = self._run_attempt(claim, args, kwargs)
        except Ignore:
            raise
        except execution.LeaseLost as exc:
            execution.record_superseded(claim, exc)
            raise Ignore() from None
        except ProviderDeferred as deferred:
            keeper.unwatch(claim)
            execution.record_deferred(claim, deferred.wait, str(deferred))
            raise Ignore() from None
        except JobCancelled:
            keeper.unwatch(claim)
            if execution.record_cancelled(claim):
                self.backend.mark_as_revoked(claim.job_id, "cancelled", request=self.request)
            raise Ignore() from None
        except BaseException as exc:
            keeper.unwatch(claim)
            self._after_failure(claim, exc)  # always raises
            raise
        finally:
            keeper.unwatch(claim)
        return value

    def _wait_for_rate_limits(self, job_id: str, named) -> None:
        """Take a start from each global limit of this job (``limits_for``), or defer the
        job (no attempt spent) until one frees and drop this delivery."""
        from queueing.broker import shared_redis
        from queueing.control import limits

        if not named:
            return
        limiter = limits.RateLimiter(shared_redis())
        for name, rate in named:
            wait = limiter.acquire(name, rate)
            if wait > 0:
                limits.defer(job_id, wait, f"rate limit {name} ({rate}) spent")
                raise Ignore()

    def _wait_for_providers(self, job_id: str) -> None:
        """Hold a job whose declared providers are open or cooling down after a 429,
        before it is claimed (no attempt spent)."""
        if not self.providers:
            return
        from queueing.control import limits
        from queueing.control.providers import hold_for_declared

        held = hold_for_declared(tuple(self.providers))
        if held is not None:
            limits.defer(job_id, held[0], held[1])
            raise Ignore()

    def _take_concurrency_slot(self, job_id: str, args, kwargs):
        """Hold a slot of the task's concurrency key (lease-bound), or defer the job."""
        from queueing.broker import shared_redis
        from queueing.control import limits
        from queueing.ledger.transitions import lease_seconds

        key = limits.concurrency_key_for(self, list(args), dict(kwargs))
        if key is None:
            return None
        limiter = limits.ConcurrencyLimiter(shared_redis())
        limit = int(getattr(self, "concurrency_limit", 1) or 1)
        wait = limiter.acquire(key, limit, job_id, lease_seconds())
        if wait > 0:
            delay = min(wait, limits.CONCURRENCY_RETRY_SECONDS)
            limits.defer(job_id, delay, f"concurrency key {key} is held ({limit} at a time)")
            raise Ignore()
        return (limiter, key)

    @staticmethod
    def _slot_renewer(slot, claim):
        if slot is None:
            return None
        from queueing.ledger.transitions import lease_seconds

        limiter, key = slot
        return lambda: limiter.renew(key, claim.job_id, lease_seconds())

    def _run_attempt(self, claim, args, kwargs):
        from queueing.ledger import transitions as execution

        if self.atomic:
            with transaction.atomic():
                value = self.run(*args, **kwargs)
                if not execution.record_success(claim, value, self):
                    raise execution.LeaseLost(f"job {claim.job_id}: lease taken over")
            return value
        value = self.run(*args, **kwargs)
        # One statement: on a dropped connection it committed with the old one or not at
        # all; the second try on a new connection tells which.
        recorded = execution.on_new_connection_if_dropped(
            claim.job_id,
            "recording the success",
            lambda: execution.record_success(claim, value, self),
            again=lambda: (
                execution.record_success(claim, value, self) or execution.succeeded_under(claim)
            ),
        )
        if not recorded:
            execution.record_superseded(claim)
            raise Ignore()
        return value

    def _after_failure(self, claim, exc: BaseException):
        from queueing.ledger import retry
        from queueing.ledger import transitions as execution
        from queueing.ledger.retry import retry_policy_for

        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc  # the worker is stopping: the lease brings the job back
        policy = retry_policy_for(self, self._queue_of(claim))
        policy = retry.RetryPolicy(
            max_attempts=claim.max_attempts,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
            auth_retries=policy.auth_retries,
            max_rate_limit_wait=policy.max_rate_limit_wait,
        )
        if isinstance(exc, RetryRequested):
            cause = exc.exc or exc
            decision = retry.decide(
                retry.Classification(retry.FailureKind.TRANSIENT), claim.attempt, policy
            )
            if decision.retry and exc.countdown is not None:
                decision = retry.Decision(True, exc.countdown, decision.kind, "retry requested")
        else:
            cause = exc
            classification = retry.classify(exc)
            if self.permanent_for and isinstance(exc, self.permanent_for):
                classification = retry.Classification(retry.FailureKind.PERMANENT)
            decision = retry.decide(classification, claim.attempt, policy)
        status = execution.on_new_connection_if_dropped(
            claim.job_id,
            "recording the failure",
            lambda: execution.record_failure(claim, cause, decision),
        )
        if status is None:
            execution.record_superseded(claim, cause)
            raise Ignore() from None
        if decision.retry:
            # Celery records RETRY (Flower, results table) and acks; no message is sent:
            # the relay publishes the job when its run_at comes.
            # celery-stubs want exc: Exception and when: numbers.Real, which mypy cannot
            # match to a float (no numeric tower); Celery takes any exception and number.
            raise Retry(exc=cause, when=decision.delay) from None  # type: ignore[arg-type]
        if cause is not exc:
            raise cause from None
        raise exc

    def _queue_of(self, claim) -> str:
        queue = (self.request.delivery_info or {}).get("routing_key")
        return queue or getattr(self, "queue", None) or "default"

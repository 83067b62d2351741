""" "Why isn't my job running?": machine-readable reasons a job is waiting.

``explain(job)`` returns a list of reasons, each a dict with a ``code``, a human
``message`` and, where one exists, an estimate (``until``, ISO 8601). Every active job
that is not running gets at least one reason. Asking the workers (which queues they
consume, which tasks they know) takes up to WORKER_INSPECT_TIMEOUT seconds.
"""

from __future__ import annotations

import datetime as dt
import logging

import redis
from django.utils import timezone

from queueing.broker import control_connection, shared_redis
from queueing.control.limits import ConcurrencyLimiter, concurrency_key_for, limits_for
from queueing.control.pause import is_paused
from queueing.ledger.enqueue import broker_queue_keys
from queueing.models import FINAL_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

WORKER_INSPECT_TIMEOUT = 1.0


def _reason(code: str, message: str, until: dt.datetime | None = None, **extra) -> dict:
    reason = {"code": code, "message": message, **extra}
    if until is not None:
        reason["until"] = until.isoformat()
    return reason


def _workers(app, *, include_paused: bool = False) -> tuple[dict, dict]:
    """Queues and registered tasks of every live worker: from the heartbeat registry
    (a millisecond); from a control broadcast (a second) only if the registry is empty,
    e.g. workers of an older release that write no heartbeat. ``include_paused``: the
    queues each worker was started for, including those it stopped consuming on a pause."""
    from queueing.registry import live_worker_entries

    field = "configured" if include_paused else "queues"
    try:
        entries = live_worker_entries()
        if entries:
            queues = {
                w: [{"name": q} for q in e.get(field, e.get("queues", []))]
                for w, e in entries.items()
            }
            return queues, {w: e.get("tasks", []) for w, e in entries.items()}
        with control_connection() as connection:
            inspect = app.control.inspect(timeout=WORKER_INSPECT_TIMEOUT, connection=connection)
            return inspect.active_queues() or {}, inspect.registered() or {}
    except Exception as exc:  # the broker is down: say so instead of failing
        logger.warning("explain: cannot ask the workers: %r", exc)
        return {}, {}


def _limit_reasons(job: Job, task, client: redis.Redis) -> list[dict]:
    reasons = []
    for name, rate in limits_for(task, job.queue) if task else []:
        rate_key = f"taskyard:rate:{name}"
        window_ms = int(rate.period * 1000)
        now_ms = int(timezone.now().timestamp() * 1000)
        recent = client.zrangebyscore(rate_key, now_ms - window_ms, "+inf", withscores=True)
        if len(recent) >= rate.limit:
            oldest_ms = float(recent[0][1])
            free_at = dt.datetime.fromtimestamp((oldest_ms + window_ms) / 1000, dt.UTC)
            reasons.append(
                _reason("rate_limited", f"rate limit {name} ({rate}) is spent", free_at, limit=name)
            )
    key = concurrency_key_for(task, job.args, job.kwargs) if task else None
    if key:
        holders = [h for h in ConcurrencyLimiter(client).holders(key) if h != str(job.id)]
        if len(holders) >= int(getattr(task, "concurrency_limit", 1) or 1):
            reasons.append(
                _reason(
                    "concurrency_key_held",
                    f"concurrency key {key} is held",
                    key=key,
                    held_by=holders,
                )
            )
    return reasons


def _provider_reasons(task: object, *, already: bool) -> list[dict]:
    """The job's declared providers that hold it now (breaker open, 429 cool-down)."""
    from queueing.control.providers import hold_for_declared

    providers = tuple(getattr(task, "providers", ()) or ())
    if not providers or already:
        return []
    try:
        held = hold_for_declared(providers)
    except redis.RedisError as exc:
        return [_reason("broker_unavailable", f"Redis does not answer: {exc}")]
    if held is None:
        return []
    wait, message = held
    return [_reason("provider_unavailable", message, timezone.now() + dt.timedelta(seconds=wait))]


def _timing_reasons(job: Job, now: dt.datetime, deferred: bool) -> list[dict]:
    """Scheduled, deferred by a provider, or backing off before a retry."""
    if not job.run_at or job.run_at <= now:
        return []
    if job.status == JobStatus.SCHEDULED and deferred:
        return [_reason("provider_unavailable", job.last_error_message, job.run_at)]
    if job.status == JobStatus.SCHEDULED:
        return [_reason("scheduled", "scheduled for later", job.run_at)]
    if job.status == JobStatus.RETRYING:
        message = f"waiting to retry after attempt {job.attempts}: {job.last_error_class}"
        return [_reason("retry_backoff", message, job.run_at)]
    return []


def explain(job: Job) -> list[dict]:
    from config.celery import app

    job.refresh_from_db()
    now = timezone.now()
    if job.status in FINAL_STATUSES:
        return [_reason("finished", f"the job is {job.status}")]
    if job.status == JobStatus.RUNNING:
        return []
    deferred = job.last_error_class == "taskyard.ProviderDeferred"
    reasons = _timing_reasons(job, now, deferred)
    paused = is_paused(job.queue)
    if paused:
        reasons.append(_reason("queue_paused", f"queue {job.queue} is paused"))
    task = app.tasks.get(job.task_name)
    reasons += _provider_reasons(task, already=deferred)
    client = shared_redis()
    try:
        reasons += _limit_reasons(job, task, client)
    except redis.RedisError as exc:
        reasons.append(_reason("broker_unavailable", f"Redis does not answer: {exc}"))
    queues, registered = _workers(app, include_paused=paused)
    consumers = [w for w, qs in queues.items() if any(q["name"] == job.queue for q in qs)]
    if not consumers:
        # While paused, workers stop consuming the queue; only one started for it counts.
        served = "is started for" if paused else "consumes"
        reasons.append(_reason("no_worker", f"no live worker {served} queue {job.queue}"))
    elif not any(job.task_name in registered.get(w, []) for w in consumers):
        reasons.append(
            _reason("task_not_registered", f"no worker on {job.queue} has task {job.task_name}")
        )
    if job.status == JobStatus.QUEUED and job.published_at is None:
        reasons.append(
            _reason(
                "unpublished", "waiting for the relay to publish it (the broker was unavailable)"
            )
        )
    if not reasons:
        waiting = None
        if job.status == JobStatus.QUEUED:
            # Messages of the same or a more urgent priority are served first.
            keys = broker_queue_keys(job.queue, up_to_priority=job.priority or 0)
            waiting = sum(client.llen(key) for key in keys)
        reasons.append(
            _reason("waiting_in_queue", f"in line on {job.queue}", messages_ahead=waiting)
        )
    return reasons

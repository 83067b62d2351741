"""Counters and histograms of ended attempts, kept in Redis.

Written by whichever process sees the event (a pool process recording an attempt, the
relay republishing a lost job) with HINCRBY, so they are right with any number of worker
processes and hosts. Read by the Prometheus collector (queueing/observe/metrics.py), and
their per-minute roll-ups by the dashboard, the stats API and the alert checks
(queueing/observe/dashboard.py, stats.py, alerts.py). Never raises on a Redis
error: metrics must not fail a job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis

from queueing.broker import shared_redis

logger = logging.getLogger(__name__)

PROCESSED_KEY = "taskyard:metrics:processed"  # field "queue|task|outcome" -> count
LOST_KEY = "taskyard:metrics:lost"  # count of jobs the relay had to republish or requeue
RUN_KEY = "taskyard:metrics:run:{queue}"  # field bucket index / "sum" / "count"
WAIT_KEY = "taskyard:metrics:wait:{queue}"
# Seconds. Run: a notification takes 0.1 s, a route solve minutes. Wait: enqueue/due to
# start; the alert thresholds (0.75 s, 1.5 s) are bucket edges.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300)


def bucket_key(value: float, buckets: tuple[float, ...]) -> str:
    """The histogram field ``value`` counts in: the index of the first edge it does not
    pass, or "inf" past the last one."""
    for index, edge in enumerate(buckets):
        if value <= edge:
            return str(index)
    return "inf"


def _observe(pipe, key: str, value: float, buckets: tuple[float, ...]) -> None:
    pipe.hincrby(key, bucket_key(value, buckets), 1)
    pipe.hincrbyfloat(key, "sum", value)
    pipe.hincrby(key, "count", 1)


# Per-minute roll-ups for the dashboard, the stats API and the alert checks: one small
# hash per queue and minute, kept two hours, so the last hour's charts and percentiles
# cost 60 HGETALLs per queue whatever the size of the ledger.
MINUTE_KEY = "taskyard:minute:{queue}:{minute}"
MINUTE_TTL_SECONDS = 2 * 3600
FAILED_OUTCOMES = ("retrying", "dead", "lost")


def add_to_minute(
    pipe,
    queue: str,
    outcome: str,
    run_seconds: float,
    minute: int,
    wait_seconds: float | None = None,
) -> None:
    """Count one ended attempt in its queue's roll-up for ``minute`` (epoch // 60):
    ``succeeded`` / ``failed``, ``run<bucket>`` (RUN_BUCKETS), ``duration_ms`` (the sum,
    for the average run time the alerts check) and, when the wait is known,
    ``wait<bucket>`` (WAIT_BUCKETS, enqueue or due time to start: the latency alert)."""
    key = MINUTE_KEY.format(queue=queue, minute=minute)
    if outcome == "succeeded":
        pipe.hincrby(key, "succeeded", 1)
    elif outcome in FAILED_OUTCOMES:
        pipe.hincrby(key, "failed", 1)
    pipe.hincrby(key, f"run{bucket_key(run_seconds, RUN_BUCKETS)}", 1)
    pipe.hincrby(key, "duration_ms", round(max(0.0, run_seconds) * 1000))
    if wait_seconds is not None:
        pipe.hincrby(key, f"wait{bucket_key(max(0.0, wait_seconds), WAIT_BUCKETS)}", 1)
    pipe.expire(key, MINUTE_TTL_SECONDS)


def minute_rollups(queues: list[str], minutes: list[int]) -> dict[str, list[dict[str, int]]]:
    """Queue -> one dict per minute (``succeeded``, ``failed``, ``run<bucket>``,
    ``duration_ms``, ``wait<bucket>``: add_to_minute)."""
    pipe = shared_redis(text=True).pipeline(transaction=False)
    for queue in queues:
        for minute in minutes:
            pipe.hgetall(MINUTE_KEY.format(queue=queue, minute=minute))
    raw = pipe.execute()
    out: dict[str, list[dict[str, int]]] = {}
    for index, queue in enumerate(queues):
        chunk = raw[index * len(minutes) : (index + 1) * len(minutes)]
        out[queue] = [{field: int(value) for field, value in row.items()} for row in chunk]
    return out


def rank_index(counts: Sequence[int], q: float) -> int | None:
    """The index of the histogram bucket the q-th percentile falls in; None if empty."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q / 100 * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return index
    return len(counts) - 1


def run_percentile(rows: list[dict[str, int]], q: float) -> float | None:
    """The q-th percentile of run time over roll-up rows, as the upper edge (seconds) of
    the bucket it falls in; None without data. Bucket precision, by design."""
    counts = [0] * (len(RUN_BUCKETS) + 1)
    for row in rows:
        for bucket in range(len(RUN_BUCKETS)):
            counts[bucket] += row.get(f"run{bucket}", 0)
        counts[-1] += row.get("runinf", 0)
    index = rank_index(counts, q)
    if index is None:
        return None
    return RUN_BUCKETS[index] if index < len(RUN_BUCKETS) else float("inf")


def observe_attempt(
    queue: str,
    task: str,
    outcome: str,
    run_seconds: float,
    wait_seconds: float | None = None,
    *,
    forget: tuple[str, str] | None = None,
) -> None:
    """An attempt ended (succeeded, retrying, dead, cancelled, lost...), having waited
    ``wait_seconds`` from enqueue (or due time) to its start. Never raises: metrics must
    not fail a job. One pipelined round trip, after the job's transaction; ``forget``
    (sorted-set key, member) is removed in the same trip (queueing/inflight.py: the
    worker is done with the job's message)."""
    try:
        pipe = shared_redis(text=True).pipeline(transaction=False)
        if forget is not None:
            pipe.zrem(*forget)
        add_attempt(pipe, queue, task, outcome, run_seconds, wait_seconds)
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("metrics: attempt not counted: %r", exc)


def add_attempt(
    pipe,
    queue: str,
    task: str,
    outcome: str,
    run_seconds: float,
    wait_seconds: float | None = None,
) -> None:
    """Add to ``pipe`` the counting of one ended attempt (what observe_attempt sends):
    for a caller that counts many in one round trip (the relay's reaper)."""
    pipe.hincrby(PROCESSED_KEY, f"{queue}|{task}|{outcome}", 1)
    _observe(pipe, RUN_KEY.format(queue=queue), run_seconds, RUN_BUCKETS)
    if wait_seconds is not None:
        _observe(pipe, WAIT_KEY.format(queue=queue), max(0.0, wait_seconds), WAIT_BUCKETS)
    add_to_minute(pipe, queue, outcome, run_seconds, int(time.time() // 60), wait_seconds)


def count_lost(count: int = 1) -> None:
    try:
        shared_redis(text=True).incrby(LOST_KEY, count)
    except redis.RedisError as exc:
        logger.debug("metrics: lost jobs not counted: %r", exc)


# --- Provider calls (queueing/control/providers.py) -------------------------------------

PROVIDER_CALLS_KEY = "taskyard:metrics:provider_calls"  # field "provider|outcome" -> count
PROVIDER_COST_KEY = "taskyard:metrics:provider_cost"  # field provider -> total cost
PROVIDER_LATENCY_KEY = "taskyard:metrics:provider_latency:{provider}"
PROVIDER_DAY_COST_KEY = "taskyard:provider:{provider}:cost:day:{day}"
PROVIDER_MONTH_COST_KEY = "taskyard:provider:{provider}:cost:month:{month}"
# Per UTC hour ("2026-12-01T13"), so the daily report can sum a business day that is not
# a UTC day.
PROVIDER_HOUR_COST_KEY = "taskyard:provider:{provider}:cost:hour:{hour}"
PROVIDER_RECENT_KEY = "taskyard:provider:{provider}:recent"
# The last calls kept per provider for its error rate and p95 (admin, API).
PROVIDER_RECENT_CALLS = 500
# Seconds: an SMS send takes ~0.2 s, an Airtable page ~0.5 s, a matrix of 500 stops ~5 s.
PROVIDER_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DAY_TTL_SECONDS = 40 * 86400
_MONTH_TTL_SECONDS = 400 * 86400


def observe_provider_call(
    provider: str, outcome: str, latency: float, cost: float, *, health: bool = False
) -> None:
    """One call to ``provider`` ended with ``outcome`` after ``latency`` seconds, costing
    ``cost``. One pipelined round trip; Redis errors are logged, never raised. Health
    checks are not calls: their result is kept with the provider's state instead."""
    if health:
        return
    now = time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    try:
        pipe = shared_redis(text=True).pipeline(transaction=False)
        pipe.hincrby(PROVIDER_CALLS_KEY, f"{provider}|{outcome}", 1)
        _observe(
            pipe, PROVIDER_LATENCY_KEY.format(provider=provider), latency, PROVIDER_LATENCY_BUCKETS
        )
        if cost:
            pipe.hincrbyfloat(PROVIDER_COST_KEY, provider, cost)
            day_key = PROVIDER_DAY_COST_KEY.format(provider=provider, day=day)
            month_key = PROVIDER_MONTH_COST_KEY.format(provider=provider, month=day[:7])
            pipe.incrbyfloat(day_key, cost)
            pipe.expire(day_key, _DAY_TTL_SECONDS)
            pipe.incrbyfloat(month_key, cost)
            pipe.expire(month_key, _MONTH_TTL_SECONDS)
            hour_key = PROVIDER_HOUR_COST_KEY.format(
                provider=provider, hour=time.strftime("%Y-%m-%dT%H", time.gmtime(now))
            )
            pipe.incrbyfloat(hour_key, cost)
            pipe.expire(hour_key, _DAY_TTL_SECONDS)
        recent = PROVIDER_RECENT_KEY.format(provider=provider)
        pipe.lpush(recent, f"{int(now * 1000)}|{outcome}|{latency * 1000:.1f}")
        pipe.ltrim(recent, 0, PROVIDER_RECENT_CALLS - 1)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("provider %s: call not counted: %r", provider, exc)

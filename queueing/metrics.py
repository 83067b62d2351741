"""Prometheus metrics, correct across any number of worker processes and hosts.

Counters and histograms are kept in Redis (HINCRBY from whichever process observes the
event: a pool process recording an attempt, the relay republishing a lost job), not in
process memory, so nothing is lost when a pool process is replaced and no multiprocess
directory is needed. Gauges are read at scrape time from the ledger and the worker
registry. ``/metrics`` (queueing/monitoring_views.py) renders them with prometheus_client.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from queueing.broker import shared_redis
from queueing.models import DeadLetter, Job, JobStatus, QueueState

logger = logging.getLogger(__name__)

PROCESSED_KEY = "taskyard:metrics:processed"  # field "queue|task|outcome" -> count
LOST_KEY = "taskyard:metrics:lost"  # count of jobs the relay had to republish or requeue
RUN_KEY = "taskyard:metrics:run:{queue}"  # field bucket index / "sum" / "count"
WAIT_KEY = "taskyard:metrics:wait:{queue}"
# Seconds. Run: a notification takes 0.1 s, a route solve minutes. Wait: enqueue/due to
# start; the alert thresholds (0.75 s, 1.5 s) are bucket edges.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300)


def _bucket(value: float, buckets: tuple[float, ...]) -> str:
    for index, edge in enumerate(buckets):
        if value <= edge:
            return str(index)
    return "inf"


def _observe(pipe, key: str, value: float, buckets: tuple[float, ...]) -> None:
    pipe.hincrby(key, _bucket(value, buckets), 1)
    pipe.hincrbyfloat(key, "sum", value)
    pipe.hincrby(key, "count", 1)


# Per-minute roll-ups for the dashboard: one small hash per queue and minute, kept two
# hours, so the last hour's charts and percentiles cost 60 HGETALLs per queue whatever
# the size of the ledger.
MINUTE_KEY = "taskyard:minute:{queue}:{minute}"
MINUTE_TTL_SECONDS = 2 * 3600
FAILED_OUTCOMES = ("retrying", "dead", "lost")


def add_to_minute(pipe, queue: str, outcome: str, run_seconds: float, minute: int) -> None:
    """Count one ended attempt in its queue's roll-up for ``minute`` (epoch // 60)."""
    key = MINUTE_KEY.format(queue=queue, minute=minute)
    if outcome == "succeeded":
        pipe.hincrby(key, "succeeded", 1)
    elif outcome in FAILED_OUTCOMES:
        pipe.hincrby(key, "failed", 1)
    pipe.hincrby(key, f"run{_bucket(run_seconds, RUN_BUCKETS)}", 1)
    pipe.expire(key, MINUTE_TTL_SECONDS)


def minute_rollups(queues: list[str], minutes: list[int]) -> dict[str, list[dict[str, int]]]:
    """Queue -> one dict per minute (``succeeded``, ``failed``, ``run<bucket>``)."""
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


def run_percentile(rows: list[dict[str, int]], q: float) -> float | None:
    """The q-th percentile of run time over roll-up rows, as the upper edge (seconds) of
    the bucket it falls in; None without data. Bucket precision, by design."""
    counts = [0] * (len(RUN_BUCKETS) + 1)
    for row in rows:
        for index in range(len(RUN_BUCKETS)):
            counts[index] += row.get(f"run{index}", 0)
        counts[-1] += row.get("runinf", 0)
    total = sum(counts)
    if not total:
        return None
    rank, seen = q / 100 * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return RUN_BUCKETS[index] if index < len(RUN_BUCKETS) else float("inf")
    return float("inf")


def observe_attempt(
    queue: str, task: str, outcome: str, run_seconds: float, wait_seconds: float | None = None
) -> None:
    """An attempt ended (succeeded, retrying, dead, cancelled, lost...), having waited
    ``wait_seconds`` from enqueue (or due time) to its start. Never raises: metrics must
    not fail a job. One pipelined round trip, after the job's transaction."""
    try:
        pipe = shared_redis(text=True).pipeline(transaction=False)
        pipe.hincrby(PROCESSED_KEY, f"{queue}|{task}|{outcome}", 1)
        _observe(pipe, RUN_KEY.format(queue=queue), run_seconds, RUN_BUCKETS)
        if wait_seconds is not None:
            _observe(pipe, WAIT_KEY.format(queue=queue), max(0.0, wait_seconds), WAIT_BUCKETS)
        add_to_minute(pipe, queue, outcome, run_seconds, int(time.time() // 60))
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("metrics: attempt not counted: %r", exc)


def count_lost(count: int = 1) -> None:
    try:
        shared_redis(text=True).incrby(LOST_KEY, count)
    except redis.RedisError as exc:
        logger.debug("metrics: lost jobs not counted: %r", exc)


def _histogram(name: str, doc: str, key: str, buckets: tuple[float, ...], client) -> list:
    family = HistogramMetricFamily(name, doc, labels=["queue"])
    for queue in settings.TASKYARD_QUEUES:
        raw = client.hgetall(key.format(queue=queue))
        cumulative, points = 0, []
        for index, edge in enumerate(buckets):
            cumulative += int(raw.get(str(index), 0))
            points.append((str(edge), cumulative))
        cumulative += int(raw.get("inf", 0))
        points.append(("+Inf", cumulative))
        family.add_metric([queue], points, sum_value=float(raw.get("sum", 0.0)))
    return [family]


class TaskyardCollector(Collector):
    """Everything under ``taskyard_``; read fresh at every scrape."""

    def collect(self):
        from queueing.registry import workers_per_queue
        from queueing.stats import status_counts

        queues = list(settings.TASKYARD_QUEUES)
        jobs = GaugeMetricFamily("taskyard_jobs", "Jobs in the ledger by queue and status",
                                 labels=["queue", "status"])  # fmt: skip
        counts = status_counts()
        for queue in queues:
            for status in JobStatus.values:
                jobs.add_metric([queue, status], counts.get(queue, {}).get(status, 0))
        yield jobs

        oldest = GaugeMetricFamily(
            "taskyard_queue_oldest_age_seconds",
            "Age of the oldest job waiting (queued) in the queue; 0 when none waits",
            labels=["queue"],
        )
        now = timezone.now()
        first = dict(
            Job.objects.filter(status=JobStatus.QUEUED)
            .values("queue")
            .annotate(at=Min("enqueued_at"))
            .values_list("queue", "at")
        )
        for queue in queues:
            age = (now - first[queue]).total_seconds() if queue in first else 0.0
            oldest.add_metric([queue], max(0.0, age))
        yield oldest

        dead = GaugeMetricFamily("taskyard_dead_letters",
                                 "Dead letters not yet replayed or discarded",
                                 labels=["queue"])  # fmt: skip
        open_letters = dict(
            DeadLetter.objects.filter(replayed_as__isnull=True, discarded_at__isnull=True)
            .values("job__queue")
            .annotate(n=Count("id"))
            .values_list("job__queue", "n")
        )
        for queue in queues:
            dead.add_metric([queue], open_letters.get(queue, 0))
        yield dead

        paused = GaugeMetricFamily("taskyard_queue_paused", "1 if the queue is paused",
                                   labels=["queue"])  # fmt: skip
        paused_names = set(QueueState.objects.filter(paused=True).values_list("name", flat=True))
        for queue in queues:
            paused.add_metric([queue], 1 if queue in paused_names else 0)
        yield paused

        client = shared_redis(text=True)
        workers = GaugeMetricFamily("taskyard_workers", "Live workers consuming the queue",
                                    labels=["queue"])  # fmt: skip
        try:
            per_queue = workers_per_queue(client)
            for queue in queues:
                workers.add_metric([queue], len(per_queue.get(queue, [])))
            yield workers

            processed = CounterMetricFamily(
                "taskyard_jobs_processed",
                "Attempts that ended, by queue, task and outcome",
                labels=["queue", "task", "outcome"],
            )
            for field, value in sorted(client.hgetall(PROCESSED_KEY).items()):
                queue, task, outcome = field.split("|", 2)
                processed.add_metric([queue, task, outcome], int(value))
            yield processed

            yield CounterMetricFamily(
                "taskyard_jobs_lost",
                "Jobs the relay had to republish or requeue (lost message, dead worker)",
                value=int(client.get(LOST_KEY) or 0),
            )
            yield from _histogram("taskyard_job_run_seconds", "Run time of attempts",
                                  RUN_KEY, RUN_BUCKETS, client)  # fmt: skip
            yield from _histogram("taskyard_job_wait_seconds",
                                  "Time from enqueue (or due time) to start",
                                  WAIT_KEY, WAIT_BUCKETS, client)  # fmt: skip
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable, worker and counter metrics left out: %r",
                           exc)  # fmt: skip

"""Prometheus metrics, correct across any number of worker processes and hosts.

Counters and histograms are kept in Redis (HINCRBY from whichever process observes the
event: a pool process recording an attempt, the relay republishing a lost job), not in
process memory, so nothing is lost when a pool process is replaced and no multiprocess
directory is needed. Gauges are read at scrape time from the ledger's
partial indexes (as big as the backlog; queueing/observe/stats.py) and the worker
registry. ``/metrics`` (queueing/observe/views.py) renders them with prometheus_client.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from queueing.broker import shared_redis
from queueing.control.pause import paused_queues_in_database
from queueing.counters import (
    LOST_KEY,
    PROCESSED_KEY,
    PROVIDER_CALLS_KEY,
    PROVIDER_COST_KEY,
    PROVIDER_LATENCY_BUCKETS,
    PROVIDER_LATENCY_KEY,
    RUN_BUCKETS,
    RUN_KEY,
    WAIT_BUCKETS,
    WAIT_KEY,
)
from queueing.models import DeadLetter, JobStatus

logger = logging.getLogger(__name__)


def _histogram(
    name: str,
    doc: str,
    key: str,
    buckets: tuple[float, ...],
    client,
    label: str = "queue",
    values: list[str] | None = None,
) -> list:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value in settings.TASKYARD_QUEUES if values is None else values:
        raw = client.hgetall(key.format(**{label: value}))
        cumulative, points = 0, []
        for index, edge in enumerate(buckets):
            cumulative += int(raw.get(str(index), 0))
            points.append((str(edge), cumulative))
        cumulative += int(raw.get("inf", 0))
        points.append(("+Inf", cumulative))
        family.add_metric([value], points, sum_value=float(raw.get("sum", 0.0)))
    return [family]


def provider_families(client) -> list:
    """Calls by outcome, latency, cost and breaker state per provider."""
    from queueing.control.breaker import BREAKER_STATES
    from queueing.control.providers import provider_status
    from queueing.specs import provider_specs

    names = list(provider_specs())
    calls = CounterMetricFamily(
        "taskyard_provider_calls",
        "Calls to third-party providers by outcome",
        labels=["provider", "outcome"],
    )
    for field, count in sorted(client.hgetall(PROVIDER_CALLS_KEY).items()):
        provider, outcome = field.split("|", 1)
        calls.add_metric([provider, outcome], int(count))
    cost = CounterMetricFamily(
        "taskyard_provider_cost", "Recorded cost of provider calls", labels=["provider"]
    )
    spent = client.hgetall(PROVIDER_COST_KEY)
    state = GaugeMetricFamily(
        "taskyard_provider_breaker_state",
        "Circuit breaker: 0 closed, 1 half-open, 2 open",
        labels=["provider"],
    )
    for spec in provider_specs().values():
        cost.add_metric([spec.name], float(spent.get(spec.name, 0.0)))
        state.add_metric([spec.name], BREAKER_STATES[provider_status(spec, client)["state"]])
    latency = _histogram(
        "taskyard_provider_call_seconds",
        "Latency of provider calls",
        PROVIDER_LATENCY_KEY,
        PROVIDER_LATENCY_BUCKETS,
        client,
        label="provider",
        values=names,
    )
    return [calls, cost, state, *latency]


class TaskyardCollector(Collector):
    """Everything under ``taskyard_``; read fresh at every scrape."""

    def collect(self):
        from queueing.observe.stats import job_counts, oldest_waiting
        from queueing.registry import workers_per_queue

        queues = list(settings.TASKYARD_QUEUES)
        jobs = GaugeMetricFamily(
            "taskyard_jobs",
            "Jobs in the ledger by queue and status (succeeded and cancelled estimated on a "
            "big ledger: taskyard_jobs_estimated)",
            labels=["queue", "status"],
        )
        tally = job_counts(queues)
        counts = tally.counts
        for queue in queues:
            for status in JobStatus.values:
                jobs.add_metric([queue, status], counts.get(queue, {}).get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "taskyard_jobs_estimated",
            "1 when taskyard_jobs' succeeded and cancelled counts are the database's "
            "estimate (a ledger above EXACT_COUNT_MAX_JOBS), 0 when exact",
            value=1 if tally.estimated else 0,
        )

        oldest = GaugeMetricFamily(
            "taskyard_queue_oldest_age_seconds",
            "Age of the oldest job waiting (queued) in the queue; 0 when none waits",
            labels=["queue"],
        )
        now = timezone.now()
        first = oldest_waiting()
        for queue in queues:
            age = (now - first[queue]).total_seconds() if queue in first else 0.0
            oldest.add_metric([queue], max(0.0, age))
        yield oldest

        dead = GaugeMetricFamily(
            "taskyard_dead_letters", "Dead letters not yet replayed or discarded", labels=["queue"]
        )
        open_letters = dict(
            DeadLetter.objects.open()
            .values("job__queue")
            .annotate(n=Count("id"))
            .values_list("job__queue", "n")
        )
        for queue in queues:
            dead.add_metric([queue], open_letters.get(queue, 0))
        yield dead

        paused = GaugeMetricFamily(
            "taskyard_queue_paused", "1 if the queue is paused", labels=["queue"]
        )
        paused_names = paused_queues_in_database()
        for queue in queues:
            paused.add_metric([queue], 1 if queue in paused_names else 0)
        yield paused

        client = shared_redis(text=True)
        workers = GaugeMetricFamily(
            "taskyard_workers", "Live workers consuming the queue", labels=["queue"]
        )
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
            yield from _histogram(
                "taskyard_job_run_seconds", "Run time of attempts", RUN_KEY, RUN_BUCKETS, client
            )
            yield from _histogram(
                "taskyard_job_wait_seconds",
                "Time from enqueue (or due time) to start",
                WAIT_KEY,
                WAIT_BUCKETS,
                client,
            )
            yield from provider_families(client)
        except redis.RedisError as exc:
            logger.warning(
                "metrics: Redis unavailable, worker and counter metrics left out: %r", exc
            )

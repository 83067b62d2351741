"""The platform's part of the demo company (``manage.py seed_demo``, discovered like every
app's ``demo.py``: maintenance/seeding.py): a day of 5-minute queue statistics and
yesterday's daily report, so the dashboard's 24-hour view and the Reports page show
real-shaped numbers on a first start instead of empty charts.

Both are made up from a per-queue profile (volume over the business day, failure rate,
typical run time), never measured, and marked ``is_demo``: ``clear()`` deletes exactly
them, the snapshot writes the real buckets after the demo's last one, and a real report
never compares itself with the demo one (queueing/observe/report.py).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.utils import timezone

from queueing.counters import RUN_BUCKETS
from queueing.models import DailyReport, QueueStat
from queueing.observe.history import SNAPSHOT_LAG, bucket_start
from queueing.observe.report import (
    AVERAGE_DAYS,
    SLOWEST_TASKS,
    assemble,
    business_today,
    business_zone,
    day_bounds,
    weighted_percentile,
)
from queueing.observe.stats import BUCKET

# After every app's demo (billing 10, routing 20, notifications 30, ...).
ORDER = 90
# The history seeded: a day of buckets, what the dashboard's longest view shows.
DEMO_HOURS = 24
# Per queue: attempts per hour at the busiest hour, failed share, typical run (ms).
PROFILES: dict[str, tuple[int, float, int]] = {
    "default": (240, 0.005, 40),
    "routing": (12, 0.02, 25_000),
    "billing": (60, 0.01, 900),
    "notifications": (600, 0.03, 180),
    "external-api": (300, 0.015, 350),
    "datasync": (30, 0.01, 2_500),
    "maintenance": (4, 0.0, 4_000),
}
OTHER_QUEUE = (20, 0.01, 100)
# Same numbers on every seed: a demo is something to point at and explain.
SEED = 17


def _busy(hour: float) -> float:
    """Share of the peak volume at ``hour`` of the business day: quiet at night, a
    morning peak when the trucks leave, a smaller one in the afternoon."""
    morning = math.exp(-(((hour - 8.5) / 2.0) ** 2))
    afternoon = 0.7 * math.exp(-(((hour - 15.0) / 2.5) ** 2))
    return 0.05 + morning + afternoon


def _histogram(attempts: int, typical_ms: int, rng: random.Random) -> dict[str, int]:
    """Attempts spread over the run-time buckets around ``typical_ms``."""
    centre = next(
        (i for i, edge in enumerate(RUN_BUCKETS) if typical_ms / 1000 <= edge), len(RUN_BUCKETS)
    )
    out: dict[str, int] = defaultdict(int)
    for _ in range(attempts):
        index = min(len(RUN_BUCKETS), max(0, centre + rng.choice((-1, 0, 0, 0, 0, 1, 1, 2))))
        out[str(index) if index < len(RUN_BUCKETS) else "inf"] += 1
    return dict(out)


def _edge_ms(key: str) -> int:
    return round((RUN_BUCKETS[-1] if key == "inf" else RUN_BUCKETS[int(key)]) * 1000)


def _stat(queue: str, bucket: dt.datetime, rng: random.Random) -> QueueStat:
    peak, failure, typical = PROFILES.get(queue, OTHER_QUEUE)
    hour = bucket.astimezone(business_zone())
    expected = peak * _busy(hour.hour + hour.minute / 60) / 12  # per 5 minutes
    attempts = max(0, round(expected * rng.uniform(0.7, 1.3)))
    failed = sum(1 for _ in range(attempts) if rng.random() < failure)
    histogram = _histogram(attempts, typical, rng)
    runs = [(_edge_ms(key), n) for key, n in histogram.items()]
    return QueueStat(
        queue=queue,
        bucket=bucket,
        taken_at=bucket + BUCKET + SNAPSHOT_LAG,
        queued=rng.randint(0, 3) if attempts else 0,
        attempts=attempts,
        succeeded=attempts - failed,
        failed=failed,
        died=failed // 4,
        throughput_per_minute=round((attempts - failed) / 5, 3),
        failure_rate=round(failed / attempts, 4) if attempts else 0.0,
        wait_p50_ms=round(rng.uniform(20, 80), 1) if attempts else None,
        wait_p95_ms=round(rng.uniform(150, 600), 1) if attempts else None,
        wait_p99_ms=round(rng.uniform(600, 1200), 1) if attempts else None,
        run_p50_ms=weighted_percentile(runs, 50),
        run_p95_ms=weighted_percentile(runs, 95),
        run_p99_ms=weighted_percentile(runs, 99),
        run_histogram=histogram,
        is_demo=True,
    )


def _queue_tasks() -> dict[str, list[str]]:
    """Queue -> the names of the jobs declared on it (for the report's task rows)."""
    from config.celery import app
    from queueing.ledger.enqueue import import_task_modules

    import_task_modules()
    tasks: dict[str, list[str]] = defaultdict(list)
    for name, task in sorted(app.tasks.items()):
        queue = getattr(task, "declared_queue", None)
        if queue:
            tasks[queue].append(name)
    return tasks


def _summary(day: dt.date, tasks: dict[str, list[str]]) -> dict[str, Any]:
    """A made-up day in the shape of report.day_summary (its own seed per day)."""
    rng = random.Random(f"{SEED}-{day.isoformat()}")
    start, end = day_bounds(day)
    hours = int((end - start).total_seconds() // 3600)
    weekend = day.weekday() >= 5
    per_task: dict[str, dict[str, Any]] = {}
    per_queue: dict[str, dict[str, Any]] = {}
    hourly = [{"hour": h, "succeeded": 0, "failed": 0} for h in range(hours)]
    for queue in settings.TASKYARD_QUEUES:
        peak, failure, typical = PROFILES.get(queue, OTHER_QUEUE)
        names = tasks.get(queue) or [f"{queue}.job"]
        totals = {"attempts": 0, "succeeded": 0, "failed": 0, "dead": 0}
        for hour in range(hours):
            volume = round(peak * _busy(hour) * (0.4 if weekend else 1.0) * rng.uniform(0.8, 1.2))
            failed = round(volume * failure * rng.uniform(0.5, 1.5))
            hourly[hour]["succeeded"] += volume - failed
            hourly[hour]["failed"] += failed
            totals["attempts"] += volume
            totals["failed"] += failed
        totals["succeeded"] = totals["attempts"] - totals["failed"]
        totals["dead"] = totals["failed"] // 4
        p95 = round(typical * rng.uniform(1.8, 2.6), 1)
        per_queue[queue] = {
            **totals,
            "failure_rate": round(totals["failed"] / totals["attempts"], 4)
            if totals["attempts"]
            else 0.0,
            "run_p95_ms": p95 if totals["attempts"] else None,
            "run_max_ms": round(p95 * 1.7) if totals["attempts"] else None,
        }
        weights = [rng.uniform(0.2, 1.0) for _ in names]
        for name, weight in zip(names, weights, strict=True):
            share = weight / sum(weights)
            attempts = round(totals["attempts"] * share)
            failed = round(totals["failed"] * share)
            task_p95 = round(typical * rng.uniform(1.2, 3.0), 1)
            per_task[name] = {
                "queue": queue,
                "attempts": attempts,
                "succeeded": attempts - failed,
                "failed": failed,
                "dead": failed // 4,
                "failure_rate": round(failed / attempts, 4) if attempts else 0.0,
                "run_p95_ms": task_p95 if attempts else None,
                "run_max_ms": round(task_p95 * 1.5) if attempts else None,
            }
    attempts = sum(q["attempts"] for q in per_queue.values())
    failed = sum(q["failed"] for q in per_queue.values())
    cost = {"twilio": round(rng.uniform(8, 14), 2), "sendgrid": round(rng.uniform(1, 3), 2)}
    return {
        "day": day.isoformat(),
        "time_zone": settings.BUSINESS_TIME_ZONE,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "demo": True,
        "totals": {
            "attempts": attempts,
            "succeeded": attempts - failed,
            "failed": failed,
            "dead": sum(q["dead"] for q in per_queue.values()),
            "failure_rate": round(failed / attempts, 4) if attempts else 0.0,
            "run_p95_ms": max((q["run_p95_ms"] or 0 for q in per_queue.values()), default=None),
            "run_max_ms": max((q["run_max_ms"] or 0 for q in per_queue.values()), default=None),
            "provider_cost": round(sum(cost.values()), 6),
        },
        "queues": dict(sorted(per_queue.items())),
        "tasks": dict(sorted(per_task.items())),
        "slowest": sorted(
            ({"task": t, **f} for t, f in per_task.items() if f["run_p95_ms"] is not None),
            key=lambda row: (-row["run_p95_ms"], row["task"]),
        )[:SLOWEST_TASKS],
        "dead_letters": [
            {
                "fingerprint": "demo-address",
                "count": max(1, failed // 40),
                "error_class": "ValueError",
                "reason": "permanent",
                "message": "DEMO-C0042: no geocoded address for the pickup",
                "tasks": sorted(tasks.get("routing", ["routing.job"]))[:1],
            }
        ],
        "provider_cost": cost,
        "hourly": hourly,
    }


def seed(company: Any = None, now: dt.datetime | None = None) -> dict[str, int]:
    """Create the demo history unless it exists; returns the rows created per model.
    ``company`` (the demo company) is not needed: the history is the platform's.

    QueueStat: every declared queue's buckets of the last DEMO_HOURS, up to the last one
    a snapshot at ``now`` would write (real rows already there are left alone).
    DailyReport: yesterday's (business time), unless a report of that day exists."""
    now = now or timezone.now()
    created = {"QueueStat": 0, "DailyReport": 0}
    if not QueueStat.objects.filter(is_demo=True).exists():
        rng = random.Random(SEED)
        last = bucket_start(now - SNAPSHOT_LAG) - BUCKET
        buckets = [last - BUCKET * n for n in range(DEMO_HOURS * 12 - 1, -1, -1)]
        taken = set(QueueStat.objects.filter(bucket__gte=buckets[0]).values_list("queue", "bucket"))
        rows = [
            _stat(queue, bucket, rng)
            for bucket in buckets
            for queue in settings.TASKYARD_QUEUES
            if (queue, bucket) not in taken
        ]
        created["QueueStat"] = len(QueueStat.objects.bulk_create(rows, ignore_conflicts=True))
    yesterday = business_today(now) - dt.timedelta(days=1)
    if not DailyReport.objects.filter(day=yesterday).exists():
        tasks = _queue_tasks()
        before = [
            _summary(yesterday - dt.timedelta(days=k), tasks) for k in range(1, AVERAGE_DAYS + 1)
        ]
        DailyReport.objects.create(
            day=yesterday, data=assemble(_summary(yesterday, tasks), before), is_demo=True
        )
        created["DailyReport"] = 1
    return created


def clear() -> dict[str, int]:
    """Delete the demo history (only rows marked is_demo); rows deleted per model."""
    return {
        "QueueStat": QueueStat.objects.filter(is_demo=True).delete()[0],
        "DailyReport": DailyReport.objects.filter(is_demo=True).delete()[0],
    }

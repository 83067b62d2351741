"""The operator dashboard, ``/admin/queueing/dashboard/``: per queue what waits, runs and
failed, how fast jobs finish over the last hour (server-side SVG charts, no CDN), run
time percentiles, paused flag and live workers.

Built to stay fast on a large ledger: counts only of the non-finished statuses and dead
(a partial index, job_open_idx), per-minute counts of the last hour's attempts grouped in
SQL (attempt_finished_idx), and percentiles over the most recent attempts only.
bench/dashboard.py measures it with 1,000,000 jobs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute
from django.template.response import TemplateResponse
from django.utils import timezone

from queueing.models import AttemptOutcome, Job, JobAttempt, JobStatus, QueueState

OPEN_STATUSES = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING,
                 JobStatus.DEAD)  # fmt: skip
FAILED = (AttemptOutcome.RETRYING, AttemptOutcome.DEAD, AttemptOutcome.LOST)
# Percentiles are taken over at most this many of the hour's latest attempts per queue.
PERCENTILE_SAMPLE = 2000
CHART_WIDTH, CHART_HEIGHT = 240, 40


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def bars(values: list[int], colour: str) -> dict:
    """An SVG bar chart of one value per minute: rects computed here, drawn by the
    template (no JavaScript, nothing fetched)."""
    top = max(values) if values and max(values) > 0 else 1
    width = CHART_WIDTH / max(1, len(values))
    rects = []
    for index, value in enumerate(values):
        height = round(CHART_HEIGHT * value / top, 1)
        rects.append({"x": round(index * width, 1), "y": round(CHART_HEIGHT - height, 1),
                      "w": max(0.5, round(width - 0.5, 1)), "h": height, "v": value})  # fmt: skip
    return {"rects": rects, "colour": colour, "max": max(values, default=0),
            "width": CHART_WIDTH, "height": CHART_HEIGHT}  # fmt: skip


def queue_panels(now: dt.datetime | None = None) -> list[dict]:
    from queueing.registry import workers_per_queue

    now = now or timezone.now()
    queues = list(settings.TASKYARD_QUEUES)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in (
        Job.objects.filter(status__in=OPEN_STATUSES).values("queue", "status")
        .annotate(n=Count("id"))
    ):  # fmt: skip
        counts[row["queue"]][row["status"]] = row["n"]
    oldest = dict(
        Job.objects.filter(status=JobStatus.QUEUED).values("queue")
        .annotate(at=Min("enqueued_at")).values_list("queue", "at")
    )  # fmt: skip
    start = (now - dt.timedelta(minutes=59)).replace(second=0, microsecond=0)
    per_minute: dict[str, dict[dt.datetime, dict[str, int]]] = defaultdict(dict)
    for row in (
        JobAttempt.objects.filter(finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at")).values("job__queue", "minute")
        .annotate(done=Count("id", filter=Q(outcome=AttemptOutcome.SUCCEEDED)),
                  failed=Count("id", filter=Q(outcome__in=FAILED)))
    ):  # fmt: skip
        per_minute[row["job__queue"]][row["minute"]] = row
    paused = set(QueueState.objects.filter(paused=True).values_list("name", flat=True))
    try:
        workers = workers_per_queue()
    except Exception:
        workers = None
    minutes = [start + dt.timedelta(minutes=n) for n in range(60)]
    panels = []
    for queue in queues:
        series = per_minute.get(queue, {})
        done = [series.get(m, {}).get("done", 0) for m in minutes]
        failed = [series.get(m, {}).get("failed", 0) for m in minutes]
        total_done, total_failed = sum(done), sum(failed)
        durations = list(
            JobAttempt.objects.filter(job__queue=queue, finished_at__gte=start)
            .order_by("-finished_at").values_list("duration_ms", flat=True)[:PERCENTILE_SAMPLE]
        ) if total_done + total_failed else []  # fmt: skip
        waiting_since = oldest.get(queue)
        panels.append({
            "queue": queue,
            "paused": queue in paused,
            "counts": {s: counts[queue].get(s, 0) for s in OPEN_STATUSES},
            "oldest_waiting_seconds": (
                round((now - waiting_since).total_seconds(), 1) if waiting_since else None
            ),
            "finished_last_hour": total_done,
            "failed_last_hour": total_failed,
            "failure_rate": (
                round(100 * total_failed / (total_done + total_failed), 1)
                if total_done + total_failed else None
            ),
            "throughput_chart": bars(done, "#2e7d32"),
            "failure_chart": bars(failed, "#c62828"),
            "run_ms_p50": _percentile(durations, 50),
            "run_ms_p95": _percentile(durations, 95),
            "workers": None if workers is None else workers.get(queue, []),
        })  # fmt: skip
    return panels


def dashboard_view(request):
    context = {
        **admin.site.each_context(request),
        "title": "Queues dashboard",
        "panels": queue_panels(),
        "flower_url": settings.FLOWER_URL,
        "generated_at": timezone.now(),
    }
    return TemplateResponse(request, "admin/queueing/dashboard.html", context)

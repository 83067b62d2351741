"""The operator dashboard, ``/admin/queueing/dashboard/``: per queue what waits, runs and
failed, how fast jobs finish over the last hour (server-side SVG charts, no CDN), run
time percentiles, paused flag and live workers.

Built to stay fast on a large ledger: counts only of the non-finished statuses and dead
(a partial index, job_open_idx); the last hour's throughput, failures and run-time
percentiles from per-minute roll-ups in Redis that workers write as attempts end
(queueing/observe/metrics.py), never from a scan of the attempts. Percentiles are bucket upper
bounds. The last 24 hours come from the 5-minute history rows (queueing/observe/history.py).
bench/dashboard.py measures it with 1,000,000 jobs, bench/history.py up to 10 million.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from queueing.control.pause import paused_queues_in_database
from queueing.counters import RUN_BUCKETS, minute_rollups, run_percentile
from queueing.models import JobStatus
from queueing.observe.stats import day_totals, oldest_waiting, status_counts

OPEN_STATUSES = (
    JobStatus.SCHEDULED,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.RETRYING,
    JobStatus.DEAD,
)
CHART_WIDTH, CHART_HEIGHT = 240, 40


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds == float("inf"):
        return f"> {RUN_BUCKETS[-1]:g} s"
    return f"≤ {seconds * 1000:g} ms" if seconds < 1 else f"≤ {seconds:g} s"


def bars(values: list[int], colour: str, label: str) -> str:
    """An inline SVG bar chart, one bar per minute, built here rather than in a template
    loop (a thousand rects through the template engine cost more than the queries)."""
    top = max(values) if values and max(values) > 0 else 1
    width = CHART_WIDTH / max(1, len(values))
    rects = "".join(
        f'<rect x="{index * width:.1f}" y="{CHART_HEIGHT - CHART_HEIGHT * value / top:.1f}" '
        f'width="{max(0.5, width - 0.5):.1f}" height="{CHART_HEIGHT * value / top:.1f}">'
        f"<title>{value}</title></rect>"
        for index, value in enumerate(values)
    )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="{}" fill="{}">{}</svg>',
        CHART_WIDTH,
        CHART_HEIGHT,
        label,
        colour,
        mark_safe(rects),  # noqa: S308 - numbers only
    )


def queue_panels(now: dt.datetime | None = None) -> list[dict]:
    from queueing.registry import workers_per_queue

    now = now or timezone.now()
    queues = list(settings.TASKYARD_QUEUES)
    counts = status_counts(OPEN_STATUSES)
    oldest = oldest_waiting()
    paused = paused_queues_in_database()
    day = day_totals(now)
    this_minute = int(now.timestamp() // 60)
    minutes = list(range(this_minute - 59, this_minute + 1))
    try:
        rollups = minute_rollups(queues, minutes)
        workers = workers_per_queue()
    except Exception:  # Redis down: the ledger counts still show
        rollups, workers = None, None
    panels = []
    for queue in queues:
        rows = rollups[queue] if rollups else [{} for _ in minutes]
        done = [row.get("succeeded", 0) for row in rows]
        failed = [row.get("failed", 0) for row in rows]
        total_done, total_failed = sum(done), sum(failed)
        waiting_since = oldest.get(queue)
        p50, p95 = run_percentile(rows, 50), run_percentile(rows, 95)
        panels.append(
            {
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
                    if total_done + total_failed
                    else None
                ),
                "throughput_chart": bars(done, "#2e7d32", f"succeeded per minute on {queue}"),
                "failure_chart": bars(failed, "#c62828", f"failed per minute on {queue}"),
                "throughput_max": max(done),
                "run_p50": _duration(p50),
                "run_p95": _duration(p95),
                "workers": None if workers is None else workers.get(queue, []),
                "rollups": rollups is not None,
                "day": day.get(queue),
            }
        )
    return panels


@permission_required("queueing.view_queue_stats", raise_exception=True)
def dashboard_view(request):
    context = {
        **admin.site.each_context(request),
        "title": "Queues dashboard",
        "panels": queue_panels(),
        "flower_url": settings.FLOWER_URL,
        "generated_at": timezone.now(),
    }
    return TemplateResponse(request, "admin/queueing/dashboard.html", context)

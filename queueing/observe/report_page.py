"""The admin's daily report pages, ``/admin/queueing/reports/`` (the stored reports) and
``/admin/queueing/reports/<day>/`` (one report with server-side SVG charts, as the
dashboard: no JavaScript, no CDN). The same context renders the email
(queueing/observe/report.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from queueing.models import DailyReport

HOURS_WIDTH, HOURS_HEIGHT = 720, 120
COMPARE_WIDTH, BAR_HEIGHT = 360, 10
DAY, PREVIOUS, AVERAGE = "#1565c0", "#90a4ae", "#cfd8dc"
SUCCEEDED, FAILED = "#2e7d32", "#c62828"
NONE = "\u2013"  # shown for a figure that has no value (no attempts that day)


def hours_chart(hourly: list[dict]) -> SafeString:
    """Stacked bars per hour of the day: succeeded (green) under failed (red)."""
    top = max((h["succeeded"] + h["failed"] for h in hourly), default=0) or 1
    width = HOURS_WIDTH / max(1, len(hourly))
    parts = []
    for index, hour in enumerate(hourly):
        ok = HOURS_HEIGHT * hour["succeeded"] / top
        bad = HOURS_HEIGHT * hour["failed"] / top
        x = index * width
        parts.append(
            f'<rect x="{x:.1f}" y="{HOURS_HEIGHT - ok:.1f}" width="{width - 2:.1f}" '
            f'height="{ok:.1f}" fill="{SUCCEEDED}"><title>{hour["hour"]:02d}:00 '
            f"{hour['succeeded']} succeeded</title></rect>"
            f'<rect x="{x:.1f}" y="{HOURS_HEIGHT - ok - bad:.1f}" width="{width - 2:.1f}" '
            f'height="{bad:.1f}" fill="{FAILED}"><title>{hour["hour"]:02d}:00 '
            f"{hour['failed']} failed</title></rect>"
        )
        if index % 3 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HOURS_HEIGHT + 12}" font-size="10">'
                f"{hour['hour']:02d}</text>"
            )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="{}">{}</svg>',
        HOURS_WIDTH,
        HOURS_HEIGHT + 16,
        "attempts per hour",
        mark_safe("".join(parts)),  # noqa: S308 - numbers only
    )


def compare_chart(values: list[tuple[str, float | None]], label: str) -> SafeString:
    """Three horizontal bars: the day, the previous day, the 7-day average."""
    top = max((v or 0 for _, v in values), default=0) or 1
    colours = (DAY, PREVIOUS, AVERAGE)
    parts = []
    for index, ((name, value), colour) in enumerate(zip(values, colours, strict=True)):
        width = (COMPARE_WIDTH - 100) * (value or 0) / top
        y = index * (BAR_HEIGHT + 3)
        parts.append(
            f'<rect x="0" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" fill="{colour}">'
            f"<title>{name}: {NONE if value is None else f'{value:g}'}</title></rect>"
            f'<text x="{width + 4:.1f}" y="{y + BAR_HEIGHT - 1}" font-size="10">'
            f"{NONE if value is None else f'{value:g}'}</text>"
        )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="{}">{}</svg>',
        COMPARE_WIDTH,
        3 * (BAR_HEIGHT + 3),
        label,
        mark_safe("".join(parts)),  # noqa: S308 - numbers only
    )


def _change(now: float | None, then: float | None) -> str:
    if now is None or then is None:
        return ""
    if then == 0:
        return "new" if now else "="
    return f"{(now - then) / then:+.0%}"


def _row(name: str, day: dict, previous: dict, average: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "queue": day.get("queue", "")}
    for key in ("attempts", "failure_rate", "run_p95_ms"):
        row[key] = day.get(key)
        row[f"{key}_previous"] = previous.get(key)
        row[f"{key}_average"] = average.get(key)
        row[f"{key}_change"] = _change(day.get(key), previous.get(key))
        row[f"{key}_vs_average"] = _change(day.get(key), average.get(key))
    for suffix in ("", "_previous", "_average"):
        rate = row[f"failure_rate{suffix}"]
        row[f"failure_pct{suffix}"] = NONE if rate is None else f"{rate:.1%}"
    return row


def report_context(report: DailyReport, *, absolute: bool = False) -> dict[str, Any]:
    """What the page and the email show: rows with the day, the previous day, the 7-day
    average and the changes; the charts (page only: many mail clients drop SVG)."""
    data = report.data
    summary, previous, average = data["summary"], data["previous"], data["week_average"]
    queues = [
        _row(
            name,
            figures,
            previous["queues"].get(name, {}),
            average["queues"].get(name, {}),
        )
        for name, figures in summary["queues"].items()
    ]
    for row in queues:
        row["chart"] = compare_chart(
            [
                ("day", row["attempts"]),
                ("previous day", row["attempts_previous"]),
                ("7-day average", row["attempts_average"]),
            ],
            f"jobs on {row['name']}",
        )
    path = reverse("queueing-report", args=[report.day.isoformat()])
    return {
        "report": report,
        "summary": summary,
        "totals": _row("all queues", summary["totals"], previous["totals"], average["totals"]),
        "cost_total": summary["totals"]["provider_cost"],
        "cost_previous": previous["totals"].get("provider_cost"),
        "cost_average": average["totals"].get("provider_cost"),
        "queues": queues,
        "tasks": [
            _row(name, figures, previous["tasks"].get(name, {}), average["tasks"].get(name, {}))
            for name, figures in summary["tasks"].items()
        ],
        "slowest": summary["slowest"],
        "dead_letters": summary["dead_letters"],
        "provider_cost": sorted(summary["provider_cost"].items()),
        "hours_chart": hours_chart(summary["hourly"]),
        "url": (settings.SITE_URL.rstrip("/") + path) if absolute else path,
    }


@permission_required("queueing.view_queue_stats", raise_exception=True)
def reports_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Daily reports",
        "reports": DailyReport.objects.only("day", "created_at", "emailed_at")[:60],
    }
    return TemplateResponse(request, "admin/queueing/reports.html", context)


@permission_required("queueing.view_queue_stats", raise_exception=True)
def report_view(request: HttpRequest, day: str) -> HttpResponse:
    try:
        report = DailyReport.objects.get(day=dt.date.fromisoformat(day))
    except (ValueError, DailyReport.DoesNotExist):
        raise Http404(f"no report for {day!r}") from None
    context = {
        **admin.site.each_context(request),
        "title": f"Daily report {report.day}",
        **report_context(report),
    }
    return TemplateResponse(request, "admin/queueing/report.html", context)

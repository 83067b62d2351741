"""The daily performance report (docs/monitoring.md, "Daily report").

At 00:00 business time (BUSINESS_TIME_ZONE) ``queueing.daily_report`` builds the report of
the day that just ended: per queue and per task the volume (attempts that ended), failure
rate and run-time p95, the slowest tasks, dead letters grouped by cause, provider cost;
each compared with the previous day and the average of the 7 days before. It is stored
as a DailyReport row (one per day: a rerun replaces it), shown in the admin
(queueing/observe/report_page.py) and mailed to ALERT_EMAILS (HTML and text).

A day's numbers come from the ledger's attempts of that day (a range of the index
attempt_finished_idx, grouped in SQL by queue, task, outcome and run time), read right
after midnight: the prune keeps every finished job at least 26 h
(queueing.control.retention.MIN_RETENTION_SECONDS), so the whole day is still there,
exact per task. The 5-minute history (QueueStat) was the alternative; it has no per-task
figures and its p95 is a bucket edge. A rebuild of a day the ledger no longer holds
whole is refused at the API and in the admin (``check_buildable``). Earlier days are
read from their stored reports, so the comparisons do not depend on retention.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Count, Min
from django.db.models.functions import TruncHour
from django.template.loader import render_to_string
from django.utils import timezone

from queueing.broker import shared_redis
from queueing.counters import PROVIDER_HOUR_COST_KEY
from queueing.models import AttemptOutcome, DailyReport, DeadLetter, JobAttempt
from queueing.observe.stats import FAILED_OUTCOMES

logger = logging.getLogger(__name__)

SLOWEST_TASKS = 10  # tasks listed by run-time p95
DEAD_LETTER_CAUSES = 10  # causes listed, most letters first
AVERAGE_DAYS = 7


def business_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.BUSINESS_TIME_ZONE)


def business_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(business_zone()).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a business day, aware (23 or 25 hours on a DST change)."""
    zone = business_zone()
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def weighted_percentile(pairs: list[tuple[int, int]], q: float) -> float | None:
    """Nearest-rank percentile over (value, how many) pairs; None when empty."""
    total = sum(n for _, n in pairs)
    if not total:
        return None
    rank, seen = q / 100 * total, 0
    for value, n in sorted(pairs):
        seen += n
        if seen >= rank:
            return float(value)
    return float(max(value for value, _ in pairs))


def _figures(groups: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Volume, failures and run-time p95 of (outcome, run ms, count) groups."""
    attempts = sum(n for _, _, n in groups)
    failed = sum(n for outcome, _, n in groups if outcome in FAILED_OUTCOMES)
    return {
        "attempts": attempts,
        "succeeded": sum(n for o, _, n in groups if o == AttemptOutcome.SUCCEEDED),
        "failed": failed,
        "dead": sum(n for o, _, n in groups if o == AttemptOutcome.DEAD),
        "failure_rate": round(failed / attempts, 4) if attempts else 0.0,
        "run_p95_ms": weighted_percentile([(ms, n) for _, ms, n in groups], 95),
        "run_max_ms": max((ms for _, ms, _ in groups), default=None),
    }


def provider_cost(start: dt.datetime, end: dt.datetime) -> dict[str, float]:
    """Provider -> cost recorded in the UTC hours of [start, end) (Redis, 40 days)."""
    from queueing.specs import provider_specs

    hours = []
    moment = start.astimezone(dt.UTC)
    while moment < end:
        hours.append(moment.strftime("%Y-%m-%dT%H"))
        moment += dt.timedelta(hours=1)
    names = list(provider_specs())
    try:
        pipe = shared_redis(text=True).pipeline(transaction=False)
        for name in names:
            for hour in hours:
                pipe.get(PROVIDER_HOUR_COST_KEY.format(provider=name, hour=hour))
        raw = pipe.execute()
    except Exception as exc:  # Redis down: the report goes out without costs
        logger.warning("report: provider costs unavailable: %r", exc)
        return {}
    costs = {}
    for index, name in enumerate(names):
        chunk = raw[index * len(hours) : (index + 1) * len(hours)]
        costs[name] = round(sum(float(v or 0) for v in chunk), 6)
    return costs


def day_summary(day: dt.date) -> dict[str, Any]:
    """The numbers of one business day, from the ledger."""
    start, end = day_bounds(day)
    ended = JobAttempt.objects.filter(finished_at__gte=start, finished_at__lt=end)
    groups = ended.values_list("job__queue", "job__task_name", "outcome", "duration_ms").annotate(
        n=Count("id")
    )
    by_queue: dict[str, list] = defaultdict(list)
    by_task: dict[tuple[str, str], list] = defaultdict(list)
    every: list = []
    for queue, task, outcome, ms, n in groups:
        by_queue[queue].append((outcome, ms, n))
        by_task[(task, queue)].append((outcome, ms, n))
        every.append((outcome, ms, n))
    tasks = {task: {"queue": queue, **_figures(rows)} for (task, queue), rows in by_task.items()}
    hourly: dict[int, dict[str, int]] = defaultdict(lambda: {"succeeded": 0, "failed": 0})
    zone = business_zone()
    for hour, outcome, n in (
        ended.annotate(hour=TruncHour("finished_at", tzinfo=zone))
        .values_list("hour", "outcome")
        .annotate(n=Count("id"))
    ):
        index = int((hour - dt.datetime.combine(day, dt.time(), tzinfo=zone)).total_seconds())
        slot = hourly[index // 3600]
        if outcome == AttemptOutcome.SUCCEEDED:
            slot["succeeded"] += n
        elif outcome in FAILED_OUTCOMES:
            slot["failed"] += n
    hours = int((end - start).total_seconds() // 3600)
    letters = _dead_letters(start, end)
    cost = provider_cost(start, end)
    return {
        "day": day.isoformat(),
        "time_zone": settings.BUSINESS_TIME_ZONE,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "totals": {**_figures(every), "provider_cost": round(sum(cost.values()), 6)},
        "queues": {queue: _figures(rows) for queue, rows in sorted(by_queue.items())},
        "tasks": dict(sorted(tasks.items())),
        "slowest": sorted(
            ({"task": t, **f} for t, f in tasks.items() if f["run_p95_ms"] is not None),
            key=lambda row: (-row["run_p95_ms"], row["task"]),
        )[:SLOWEST_TASKS],
        "dead_letters": letters,
        "provider_cost": cost,
        "hourly": [
            {"hour": index, **hourly.get(index, {"succeeded": 0, "failed": 0})}
            for index in range(hours)
        ],
    }


def _dead_letters(start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """The day's dead letters grouped by cause (the error fingerprint), most first, with
    the tasks that died of it."""
    of_day = DeadLetter.objects.filter(created_at__gte=start, created_at__lt=end)
    causes = list(
        of_day.values("fingerprint")
        .annotate(
            count=Count("id"),
            error_class=Min("error_class"),
            reason=Min("reason"),
            message=Min("error_message"),
        )
        .order_by("-count", "fingerprint")[:DEAD_LETTER_CAUSES]
    )
    tasks: dict[str, set[str]] = defaultdict(set)
    for fingerprint, task in of_day.filter(
        fingerprint__in=[c["fingerprint"] for c in causes]
    ).values_list("fingerprint", "job__task_name"):
        tasks[fingerprint].add(task)
    return [
        {
            **cause,
            "message": (cause["message"] or "")[:300],
            "tasks": sorted(tasks[cause["fingerprint"]]),
        }
        for cause in causes
    ]


def summary_of(day: dt.date) -> dict[str, Any]:
    """A past day's numbers: its stored report (never the demo's made-up one), else the
    ledger (what retention kept)."""
    stored = (
        DailyReport.objects.filter(day=day, is_demo=False).values_list("data", flat=True).first()
    )
    return stored["summary"] if stored else day_summary(day)


COMPARED = ("attempts", "failure_rate", "run_p95_ms")


def _pick(summary: dict) -> dict[str, Any]:
    """The compared figures of a summary: totals, per queue, per task."""

    def fields(figures: dict) -> dict:
        return {key: figures.get(key) for key in COMPARED}

    return {
        "totals": {
            **fields(summary["totals"]),
            "provider_cost": summary["totals"]["provider_cost"],
        },
        "queues": {q: fields(f) for q, f in summary["queues"].items()},
        "tasks": {t: fields(f) for t, f in summary["tasks"].items()},
    }


def _average(days: list[dict]) -> dict[str, Any]:
    """The mean of each figure over ``days``: a day without attempts counts as 0 in the
    volume and cost, and is left out of the failure rate and the p95 (it had none)."""

    def mean(rows: list[dict], keys: tuple[str, ...] = COMPARED) -> dict:
        out: dict[str, Any] = {}
        for key in keys:
            if key in ("attempts", "provider_cost"):
                out[key] = round(sum(r.get(key) or 0 for r in rows) / len(days), 2)
            else:
                seen = [r[key] for r in rows if r.get(key) is not None and r.get("attempts")]
                digits = 4 if key == "failure_rate" else 1  # a rate; milliseconds
                out[key] = round(sum(seen) / len(seen), digits) if seen else None
        return out

    picked = [_pick(day) for day in days]
    queues = sorted({q for p in picked for q in p["queues"]})
    tasks = sorted({t for p in picked for t in p["tasks"]})
    return {
        "totals": mean([p["totals"] for p in picked], (*COMPARED, "provider_cost")),
        "queues": {q: mean([p["queues"].get(q, {}) for p in picked]) for q in queues},
        "tasks": {t: mean([p["tasks"].get(t, {}) for p in picked]) for t in tasks},
    }


def build(day: dt.date) -> dict[str, Any]:
    """The report of ``day``: its summary, the previous day's and the 7-day average."""
    before = [summary_of(day - dt.timedelta(days=k)) for k in range(1, AVERAGE_DAYS + 1)]
    return assemble(day_summary(day), before)


def assemble(summary: dict[str, Any], before: list[dict[str, Any]]) -> dict[str, Any]:
    """A report's data from a day's summary and those of the AVERAGE_DAYS days before it
    (newest first): the previous day's figures and the average of them all."""
    return {
        "summary": summary,
        "previous": _pick(before[0]),
        "week_average": _average(before),
        "generated_at": timezone.now().isoformat(),
    }


class ReportUnavailable(ValueError):
    """The day cannot be (re)built: it has not ended, or the ledger no longer holds all of
    its attempts (a rebuild would replace the stored report with a truncated one)."""


def check_buildable(day: dt.date, now: dt.datetime | None = None) -> None:
    """ReportUnavailable unless ``day`` has ended and every finished job of it is still
    retained (queueing.control.retention: at least 26 h, so yesterday's until ~02:00)."""
    from queueing.control.retention import retention_seconds

    now = now or timezone.now()
    if day >= business_today(now):
        raise ReportUnavailable(f"{day} has not ended yet (business time)")
    kept = min(
        retention_seconds(queue, status)
        for queue in settings.TASKYARD_QUEUES
        for status in settings.TASKYARD_DEFAULT_RETENTION
    )
    start, _ = day_bounds(day)
    if start < now - dt.timedelta(seconds=kept):
        raise ReportUnavailable(
            f"finished jobs are kept {kept / 3600:g} h: the ledger no longer holds all of "
            f"{day}'s attempts, so its report cannot be rebuilt (the stored one stays)"
        )


def create(day: dt.date | None = None, *, email: bool = True) -> DailyReport:
    """Build and store the report of ``day`` (default: yesterday, business time), then
    mail it. A rerun for the same day replaces the stored numbers. The API and the admin
    ask check_buildable first: a rebuild must not replace a good report with a truncated
    one."""
    day = day or business_today() - dt.timedelta(days=1)
    report, _ = DailyReport.objects.update_or_create(
        day=day, defaults={"data": build(day), "is_demo": False}
    )
    if email:
        send(report)
    return report


def send(report: DailyReport) -> int:
    """Mail the report to ALERT_EMAILS (HTML and text); the number of messages sent. A
    failed delivery is logged: the stored report is the record."""
    if not settings.ALERT_EMAILS:
        return 0
    from queueing.observe.report_page import report_context

    context = report_context(report, absolute=True)
    totals = report.data["summary"]["totals"]
    subject = (
        f"Taskyard daily report {report.day}: {totals['attempts']} jobs, "
        f"{totals['failure_rate']:.1%} failed"
    )
    message = EmailMultiAlternatives(
        subject,
        render_to_string("queueing/report_email.txt", context),
        settings.DEFAULT_FROM_EMAIL,
        list(settings.ALERT_EMAILS),
    )
    message.attach_alternative(render_to_string("queueing/report_email.html", context), "text/html")
    try:
        sent = message.send()
    except Exception as exc:
        logger.error("report %s: email to %s failed: %r", report.day, settings.ALERT_EMAILS, exc)
        return 0
    DailyReport.objects.filter(id=report.id).update(emailed_at=timezone.now())
    return sent

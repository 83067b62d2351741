"""Alerts: thresholds from settings (ALERT_THRESHOLDS) checked every minute by beat
(``queueing.check_alerts``), recorded as Alert rows and delivered by email to
ALERT_EMAILS (Django's email backend, real SMTP) and to an optional signed webhook.

An alert opens once per key (kind:queue) and stays open while its condition holds (no
repeated emails); it is re-sent when its severity rises, and a "resolved" message goes
out when the condition clears.

What the checks read costs the same at any ledger size (docs/monitoring.md, "Alerts"):
failure rate, run time, throughput and the ended attempts' waits come from the 5-minute
history rows and the workers' minute roll-ups (stats.queue_tallies); the backlog and the
running jobs' waits from the partial indexes over open jobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from queueing.control.pause import paused_queues_in_database
from queueing.counters import WAIT_BUCKETS, bucket_key
from queueing.models import Alert, AlertStatus, DeadLetter, Job, JobStatus, QueueState
from queueing.observe.stats import Tally, queue_tallies

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"warning": 1, "critical": 2}
# Running jobs read for their waits: more than enough for a p95 (a queue's concurrency is
# in the tens), and a bound on the read if the running set ever balloons.
RUNNING_WAITS_READ = 5000


def _wait_index(seconds: float) -> int:
    """The position of ``seconds`` in a Tally's wait histogram (counters.WAIT_BUCKETS)."""
    key = bucket_key(seconds, WAIT_BUCKETS)
    return len(WAIT_BUCKETS) if key == "inf" else int(key)


@dataclass(frozen=True)
class Finding:
    kind: str
    queue: str
    severity: str
    value: float
    threshold: float
    message: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.queue}"


def evaluate(now: dt.datetime | None = None) -> list[Finding]:
    """Every threshold crossed right now, per queue."""
    now = now or timezone.now()
    limits = settings.ALERT_THRESHOLDS
    window = now - dt.timedelta(minutes=limits["window_minutes"])
    queues = list(settings.TASKYARD_QUEUES)
    paused = paused_queues_in_database()
    # A queue resumed within the window: its jobs waited for the pause, not for a worker,
    # so their wait counts from the resume (an operator's pause is not latency).
    resumed = dict(
        QueueState.objects.filter(paused=False, changed_at__gte=window).values_list(
            "name", "changed_at"
        )
    )
    findings: list[Finding] = []

    backlog = dict(
        Job.objects.filter(status=JobStatus.QUEUED)
        .values("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    # What ended in the window: history rows and minute roll-ups (stats.queue_tallies),
    # never a scan of attempts, so the check costs the same at any ledger size.
    tallies = queue_tallies(int(limits["window_minutes"]), queues, now)
    attempts = {q: {"total": t.attempts, "failed": t.failed} for q, t in tallies.items()}
    run_avg = {q: t.run_ms_total / t.attempts for q, t in tallies.items() if t.attempts}
    dead = dict(
        DeadLetter.objects.open()
        .values("job__queue")
        .annotate(n=Count("id"))
        .values_list("job__queue", "n")
    )
    # Waits: the attempts that ended in the window (their roll-ups' wait buckets) and the
    # jobs running now that started in it (the partial index over running jobs: as big as
    # what runs). A queue resumed within the window is judged on its running jobs alone,
    # their waits counted from the resume: the ended attempts' waits include the pause.
    waits = {
        queue: Tally() if queue in resumed else Tally(waits=list(tally.waits))
        for queue, tally in tallies.items()
    }
    running = Job.objects.filter(status=JobStatus.RUNNING, started_at__gte=window).values_list(
        "queue", "started_at", "enqueued_at", "run_at"
    )[:RUNNING_WAITS_READ]
    for queue, started_at, enqueued_at, run_at in running:
        if started_at is None or queue not in waits:  # the filter excludes None; for mypy
            continue
        due = max(enqueued_at, run_at) if run_at else enqueued_at
        if queue in resumed:
            due = max(due, resumed[queue])
        seconds = max(0.0, (started_at - due).total_seconds())
        waits[queue].waits[_wait_index(seconds)] += 1
    try:
        from queueing.registry import workers_per_queue

        consumers = workers_per_queue()
    except Exception as exc:
        logger.warning("alerts: worker registry unavailable: %r", exc)
        consumers = None
    required = queues if settings.HEALTH_WORKER_QUEUES is None else settings.HEALTH_WORKER_QUEUES

    data = {
        "backlog": backlog,
        "attempts": attempts,
        "run_avg": run_avg,
        "dead": dead,
        "waits": waits,
        "consumers": consumers,
        "required": required,
        "paused": paused,
    }
    for queue in queues:
        findings.extend(_queue_findings(queue, data, limits))
    findings.extend(_throughput_findings(attempts, backlog, paused, limits))
    findings.extend(_budget_findings())
    findings.extend(app_findings(now))
    return findings


def app_findings(now: dt.datetime) -> list[Finding]:
    """Alerts an app raises about itself: each installed app's ``alerts.py`` may define
    ``findings(now)`` returning dicts with kind, queue (the thing it is about), severity
    ("warning" or "critical"), message, and optionally value and threshold. They open,
    escalate, notify, take answers and resolve like the platform's own (maintenance's
    failed or stale backups, for one). A source that raises is logged and skipped."""
    from queueing.discovery import app_modules

    found: list[Finding] = []
    for config, module in app_modules("alerts"):
        source = getattr(module, "findings", None)
        if config.name == "queueing" or not callable(source):
            continue
        try:
            for item in source(now):
                severity = item["severity"]
                if severity not in SEVERITY_RANK:
                    raise ValueError(f"severity {severity!r} is not warning or critical")
                found.append(
                    Finding(
                        str(item["kind"]),
                        str(item.get("queue") or config.label),
                        severity,
                        float(item.get("value") or 0.0),
                        float(item.get("threshold") or 0.0),
                        str(item["message"]),
                    )
                )
        except Exception:
            logger.exception("alerts: %s/alerts.py findings() failed; skipped", config.name)
    return found


def _throughput_findings(
    attempts: dict[str, dict], backlog: dict[str, int], paused: set[str], limits: dict
) -> list[Finding]:
    """Attempts finished per hour across the running queues (the window's count scaled to
    an hour) below the configured floor, while jobs wait: an idle platform is not slow.
    Off unless ALERT_THROUGHPUT_WARNING_PER_HOUR / _CRITICAL_PER_HOUR are set."""
    warning = limits["throughput_warning_per_hour"]
    critical = limits["throughput_critical_per_hour"]
    if not (warning or critical):
        return []
    if not any(n for queue, n in backlog.items() if queue not in paused):
        return []
    done = sum(entry["total"] for queue, entry in attempts.items() if queue not in paused)
    per_hour = done * 60 / limits["window_minutes"]
    for severity, floor in (("critical", critical), ("warning", warning)):
        if floor and per_hour < floor:
            message = (
                f"{per_hour:.0f} jobs/hour finished in the last {limits['window_minutes']} min "
                f"while jobs wait (floor {floor:g}/hour)"
            )
            return [Finding("throughput", "all", severity, round(per_hour, 1), floor, message)]
    return []


# Share of a provider's monthly budget that raises a warning; 100 % is critical.
BUDGET_WARNING_SHARE = 0.8


def _budget_findings() -> list[Finding]:
    """A provider past 80 % (warning) or 100 % (critical) of its monthly budget; the
    Finding's queue is the provider's name (key provider_budget:<name>)."""
    from queueing.control.providers import provider_status
    from queueing.specs import provider_specs

    findings = []
    for spec in provider_specs().values():
        if not spec.monthly_budget:
            continue
        try:
            used = provider_status(spec)["budget_used"] or 0.0
        except Exception as exc:  # Redis down: the other alerts still run
            logger.warning("alerts: provider %s budget unknown: %r", spec.name, exc)
            continue
        if used >= BUDGET_WARNING_SHARE:
            findings.append(
                Finding(
                    "provider_budget",
                    spec.name,
                    "critical" if used >= 1 else "warning",
                    round(used * 100, 1),
                    100.0 if used >= 1 else BUDGET_WARNING_SHARE * 100,
                    f"provider {spec.name} has spent {used:.0%} of its monthly budget "
                    f"({spec.monthly_budget:g} {spec.cost_unit})",
                )
            )
    return findings


def _over(value: float, limit: float | None) -> bool:
    """``value`` crosses ``limit``; a None limit is a check switched off."""
    return limit is not None and value > limit


def _queue_findings(queue: str, data: dict, limits: dict) -> list[Finding]:
    """The thresholds ``queue`` crosses: ALERT_THRESHOLDS, with the queue declaration's
    own ``alerts`` over them (TASKYARD_QUEUES; None switches a check off there)."""
    from queueing.specs import queue_specs

    spec = queue_specs().get(queue)
    limits = {**limits, **(spec.alerts if spec else {})}
    findings: list[Finding] = []
    waiting = data["backlog"].get(queue, 0)
    if _over(waiting, limits["backlog"]):
        findings.append(
            Finding(
                "backlog",
                queue,
                "warning",
                waiting,
                limits["backlog"],
                f"{waiting} jobs waiting on {queue}",
            )
        )
    counts = data["attempts"].get(queue, {"total": 0, "failed": 0})
    if counts["total"] >= limits["min_attempts"]:
        rate = counts["failed"] / counts["total"]
        critical = _over(rate, limits["failure_rate_critical"])
        if critical or _over(rate, limits["failure_rate"]):
            findings.append(
                Finding(
                    "failure_rate",
                    queue,
                    "critical" if critical else "warning",
                    round(rate, 4),
                    limits["failure_rate_critical" if critical else "failure_rate"],
                    f"{rate:.0%} of {counts['total']} attempts on {queue} failed in the "
                    f"last {limits['window_minutes']} min",
                )
            )
    average_ms = data["run_avg"].get(queue)
    if average_ms is not None and _over(average_ms / 1000, limits["average_run_seconds"]):
        findings.append(
            Finding(
                "run_time",
                queue,
                "warning",
                round(average_ms / 1000, 2),
                limits["average_run_seconds"],
                f"attempts on {queue} took {average_ms / 1000:.1f} s on average",
            )
        )
    letters = data["dead"].get(queue, 0)
    if _over(letters, limits["dead_letters"]):
        findings.append(
            Finding(
                "dead_letters",
                queue,
                "warning",
                letters,
                limits["dead_letters"],
                f"{letters} dead letters waiting on {queue}",
            )
        )
    # A paused queue's jobs wait by the operator's choice: no latency alert for it.
    waits = data["waits"].get(queue)
    span = None if queue in data["paused"] or waits is None else waits.wait_range_ms(95)
    if span is not None:
        findings.extend(_latency_findings(queue, span, limits))
    consumers = data["consumers"]
    if (
        consumers is not None
        and queue in data["required"]
        and queue not in data["paused"]
        and not consumers.get(queue)
    ):
        findings.append(
            Finding("no_worker", queue, "critical", 0, 1, f"no live worker consumes {queue}")
        )
    return findings


def _latency_findings(queue: str, span: tuple[float, float], limits: dict) -> list[Finding]:
    """The latency finding for a p95 wait known to its bucket ``span`` (lower, upper edge
    in ms): judged on the upper edge, exact since the thresholds are bucket edges
    (counters.WAIT_BUCKETS; a threshold between edges alerts once the p95 may pass it).
    The value recorded is the upper edge, or the top edge for "longer than every edge"."""
    lower, upper = span
    critical = _over(upper, limits["latency_critical_ms"])
    if not (critical or _over(upper, limits["latency_warning_ms"])):
        return []
    if upper == float("inf"):
        value, said = lower, f"over {lower:.0f} ms"
    else:
        value, said = upper, f"{lower:.0f} to {upper:.0f} ms"
    return [
        Finding(
            "latency",
            queue,
            "critical" if critical else "warning",
            round(value, 1),
            limits["latency_critical_ms" if critical else "latency_warning_ms"],
            f"p95 enqueue-to-start on {queue} is {said}",
        )
    ]


def check(now: dt.datetime | None = None) -> dict[str, list[str]]:
    """Open, update and resolve Alert rows to match evaluate(); notify on changes.
    Returns the keys opened, escalated, reminded (a snooze ran out) and resolved.

    Operators' answers (alert_actions.py): an acknowledged alert notifies again only when
    its severity rises (which clears the acknowledgement) or when it resolves; a snoozed
    one notifies nothing until the snooze ends, then once if it still holds and nobody
    acknowledged it. Resolutions are always sent."""
    now = now or timezone.now()
    findings = {finding.key: finding for finding in evaluate(now)}
    changes: dict[str, list[str]] = {"opened": [], "escalated": [], "reminded": [], "resolved": []}
    open_alerts = {alert.key: alert for alert in Alert.objects.filter(status=AlertStatus.OPEN)}
    for key, finding in findings.items():
        alert = open_alerts.get(key)
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        key=key,
                        kind=finding.kind,
                        queue=finding.queue,
                        severity=finding.severity,
                        message=finding.message,
                        value=finding.value,
                        threshold=finding.threshold,
                        opened_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                continue  # a concurrent check opened it: one open alert per key
            changes["opened"].append(key)
            notify(alert, "opened")
            continue
        escalated = SEVERITY_RANK[finding.severity] > SEVERITY_RANK.get(alert.severity, 0)
        Alert.objects.filter(id=alert.id).update(
            last_seen_at=now,
            value=finding.value,
            message=finding.message,
            severity=finding.severity if escalated else alert.severity,
            threshold=finding.threshold if escalated else alert.threshold,
        )
        if escalated:
            # Worse than what was acknowledged: the acknowledgement no longer covers it.
            Alert.objects.filter(id=alert.id).update(acknowledged_at=None, acknowledged_by=None)
            alert.refresh_from_db()
            changes["escalated"].append(key)
            if not is_snoozed(alert, now):
                notify(alert, "escalated")
        elif alert.snoozed_until is not None and alert.snoozed_until <= now:
            # The snooze is over and the condition still holds: say so once.
            Alert.objects.filter(id=alert.id).update(snoozed_until=None)
            alert.refresh_from_db()
            if alert.acknowledged_at is None:
                changes["reminded"].append(key)
                notify(alert, "still open after its snooze")
    for key, alert in open_alerts.items():
        if key not in findings:
            updated = Alert.objects.filter(id=alert.id, status=AlertStatus.OPEN).update(
                status=AlertStatus.RESOLVED, resolved_at=now
            )
            if updated:
                alert.refresh_from_db()
                changes["resolved"].append(key)
                notify(alert, "resolved")
    return changes


def is_snoozed(alert: Alert, now: dt.datetime) -> bool:
    return alert.snoozed_until is not None and alert.snoozed_until > now


def notify(alert: Alert, event: str) -> None:
    """Email the admins and call the webhook. Failures are logged, never raised: the
    alert row is the record, and the next change notifies again."""
    subject = f"[taskyard] {alert.severity.upper()} {event}: {alert.message}"
    if event == "resolved":
        subject = f"[taskyard] resolved: {alert.key} ({alert.message})"
    body = (
        f"Alert {alert.key} {event}.\n\n{alert.message}\nvalue: {alert.value} "
        f"(threshold {alert.threshold})\nopened: {alert.opened_at.isoformat()}\n"
        + (f"resolved: {alert.resolved_at.isoformat()}\n" if alert.resolved_at else "")
    )
    delivered = False
    if settings.ALERT_EMAILS:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS)
            delivered = True
        except Exception:
            logger.exception("alert %s: email to %s failed", alert.key, settings.ALERT_EMAILS)
    if settings.ALERT_WEBHOOK_URL:
        delivered = _post_webhook(alert, event) or delivered
    if delivered:
        Alert.objects.filter(id=alert.id).update(notified_at=timezone.now())
    logger.warning("alert %s %s: %s", alert.key, event, alert.message)


def signature(body: bytes) -> str:
    """``sha256=<hex HMAC of the body>`` with ALERT_WEBHOOK_SECRET: the receiver checks
    it to know the call came from us."""
    key = settings.ALERT_WEBHOOK_SECRET.encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _post_webhook(alert: Alert, event: str) -> bool:
    payload = {
        "event": event,
        "key": alert.key,
        "kind": alert.kind,
        "queue": alert.queue,
        "severity": alert.severity,
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }
    body = json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
        settings.ALERT_WEBHOOK_URL,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Taskyard-Signature": signature(body)},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return 200 <= response.status < 300
    except Exception as exc:
        logger.error("alert %s: webhook %s failed: %r", alert.key, settings.ALERT_WEBHOOK_URL, exc)
        return False

"""Every alert threshold, and what an operator's answer (acknowledge, snooze) does to the
notifications that follow. A paused queue is the operator's choice, not latency."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.utils import timezone

import queueing
from queueing.broker import shared_redis
from queueing.control.pause import pause_queue, resume_queue
from queueing.counters import add_to_minute
from queueing.models import (
    Alert,
    AttemptOutcome,
    AuditEvent,
    DeadLetter,
    DeadLetterReason,
    Job,
    JobStatus,
    QueueStat,
)
from queueing.observe import alert_actions
from queueing.observe.alerts import check, evaluate
from queueing.observe.history import bucket_start, snapshot
from tests.api.conftest import client_for
from tests.factories import ended_attempt
from tests.harness import delete_keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_rollups")]
QUEUE = "isolated"


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = ""
    settings.HEALTH_WORKER_QUEUES = []  # no_worker has its own test (test_alerts.py)
    settings.ALERT_THRESHOLDS = {
        **settings.ALERT_THRESHOLDS,
        "backlog": 1000,
        "failure_rate": 0.02,
        "failure_rate_critical": 0.05,
        "min_attempts": 10,
        "average_run_seconds": 60.0,
        "dead_letters": 50,
        "latency_warning_ms": 750.0,
        "latency_critical_ms": 1500.0,
        "throughput_warning_per_hour": 0.0,
        "throughput_critical_per_hour": 0.0,
    }
    yield
    resume_queue(QUEUE)


def finished(
    outcomes: dict[str, int],
    *,
    duration_ms: int = 20,
    queue: str = QUEUE,
    minutes_ago: int = 0,
    at: dt.datetime | None = None,
    wait_ms: int | None = None,
) -> None:
    """Attempts that finished ``minutes_ago`` (or ``at``) on ``queue``: {outcome: count},
    counted in the minute roll-ups as a worker counts them (counters.add_to_minute)."""
    pipe = shared_redis(text=True).pipeline(transaction=False)
    minute = int((at.timestamp() if at else time.time()) // 60) - minutes_ago
    wait = None if wait_ms is None else wait_ms / 1000
    for outcome, count in outcomes.items():
        for _ in range(count):
            add_to_minute(pipe, queue, outcome, duration_ms / 1000, minute, wait)
    pipe.execute()


def later(minutes: int) -> dt.datetime:
    return timezone.now() + dt.timedelta(minutes=minutes)


def started_after_waiting(seconds: float, count: int = 20, queue: str = QUEUE) -> None:
    now = timezone.now()
    for _ in range(count):
        Job.objects.create(
            task_name="queueing.ping",
            queue=queue,
            status=JobStatus.RUNNING,
            enqueued_at=now - dt.timedelta(seconds=seconds),
            started_at=now,
            max_attempts=1,
        )


def found(kind: str, now: dt.datetime | None = None) -> list:
    return [f for f in evaluate(now) if f.kind == kind and f.queue in (QUEUE, "all")]


# --- thresholds -------------------------------------------------------------------------


def test_failure_rate_is_a_warning_past_2_percent_and_critical_past_5():
    finished({AttemptOutcome.SUCCEEDED: 97, AttemptOutcome.RETRYING: 3})
    [warning] = found("failure_rate")
    assert (warning.severity, warning.value, warning.threshold) == ("warning", 0.03, 0.02)
    finished({AttemptOutcome.DEAD: 4})  # 7 of 104
    [critical] = found("failure_rate")
    assert (critical.severity, critical.threshold) == ("critical", 0.05)


def test_failure_rate_needs_enough_attempts_to_judge():
    finished({AttemptOutcome.LOST: 1, AttemptOutcome.SUCCEEDED: 8})  # 9 attempts
    assert found("failure_rate") == []


def test_slow_attempts_raise_a_run_time_warning(settings):
    settings.ALERT_THRESHOLDS["average_run_seconds"] = 1.0
    finished({AttemptOutcome.SUCCEEDED: 3}, duration_ms=900)
    assert found("run_time") == []
    finished({AttemptOutcome.SUCCEEDED: 3}, duration_ms=1500)  # average 1.2 s
    assert [f.value for f in found("run_time")] == [1.2]


def test_open_dead_letters_past_the_threshold(settings):
    settings.ALERT_THRESHOLDS["dead_letters"] = 2
    now = timezone.now()
    for _ in range(3):
        job = Job.objects.create(
            task_name="queueing.ping",
            queue=QUEUE,
            status=JobStatus.DEAD,
            enqueued_at=now,
            max_attempts=1,
        )
        DeadLetter.objects.create(job=job, reason=DeadLetterReason.PERMANENT, fingerprint="f")
    [finding] = found("dead_letters")
    assert (finding.value, finding.threshold) == (3, 2)


def test_latency_warning_then_critical():
    started_after_waiting(1.0)  # p95 1000 ms
    [warning] = found("latency")
    assert warning.severity == "warning"
    started_after_waiting(3.0, count=40)
    [critical] = found("latency")
    assert critical.severity == "critical"


def test_a_20_minute_backup_opens_no_latency_or_run_time_alert_on_maintenance():
    """The maintenance queue has one slot: the hourly prune waits behind a 20-minute
    backup by design. Its declaration switches latency and run-time alerts off there;
    the same numbers on another queue alert."""
    for queue in ("maintenance", QUEUE):
        finished({AttemptOutcome.SUCCEEDED: 1}, duration_ms=20 * 60 * 1000, queue=queue)
        started_after_waiting(19 * 60, count=1, queue=queue)
    kinds = {(f.kind, f.queue, f.severity) for f in evaluate()}
    assert {k for k in kinds if k[1] == "maintenance"} == set()
    assert {("latency", QUEUE, "critical"), ("run_time", QUEUE, "warning")} <= kinds


def test_a_queue_declares_its_own_thresholds(settings):
    queues = {**settings.TASKYARD_QUEUES}
    queues[QUEUE] = {
        "concurrency": 2,
        "alerts": {"latency_warning_ms": 60_000.0, "latency_critical_ms": 300_000.0},
    }
    settings.TASKYARD_QUEUES = queues
    started_after_waiting(3.0)  # past the global critical 1.5 s, under the queue's 60 s
    assert found("latency") == []
    started_after_waiting(120.0, count=60)
    [finding] = found("latency")
    assert (finding.severity, finding.threshold) == ("warning", 60_000.0)

    from django.core.exceptions import ImproperlyConfigured

    from queueing.specs import parse_queue

    with pytest.raises(ImproperlyConfigured, match="alerts takes only"):
        parse_queue("x", {"concurrency": 1, "alerts": {"latency_ms": 5}})
    with pytest.raises(ImproperlyConfigured, match=r"alerts.backlog must be a number >= 0"):
        parse_queue("x", {"concurrency": 1, "alerts": {"backlog": "many"}})


def test_throughput_floor_alerts_only_while_jobs_wait(settings):
    settings.ALERT_THRESHOLDS.update(
        throughput_warning_per_hour=8000.0, throughput_critical_per_hour=5000.0
    )
    finished({AttemptOutcome.SUCCEEDED: 500}, minutes_ago=10)
    finished({AttemptOutcome.SUCCEEDED: 1000})  # 1500 in 15 min = 6000/hour
    assert found("throughput") == []  # nothing waits: a quiet hour is not slow
    Job.objects.create(
        task_name="queueing.ping",
        queue=QUEUE,
        status=JobStatus.QUEUED,
        enqueued_at=timezone.now(),
        max_attempts=1,
    )
    [warning] = found("throughput")
    assert (warning.severity, warning.value, warning.threshold) == ("warning", 6000.0, 8000.0)
    # Six minutes on, the 500 that ended ten minutes ago have left the 15-minute window.
    [critical] = found("throughput", later(6))  # 4000/hour
    assert (critical.severity, critical.threshold) == ("critical", 5000.0)
    settings.ALERT_THRESHOLDS.update(
        throughput_warning_per_hour=0.0, throughput_critical_per_hour=0.0
    )
    assert found("throughput") == []  # off unless configured


# --- where the numbers come from --------------------------------------------------------


def test_the_failure_rate_opens_past_its_threshold_and_closes_under_it_from_rollups():
    """The verdicts the ledger scan gave, from the workers' minute roll-ups: 3 failed of
    100 opens the warning, 100 more successes (1.5 %) close it, and so does the window
    moving past the failures."""
    finished({AttemptOutcome.SUCCEEDED: 97, AttemptOutcome.RETRYING: 3}, minutes_ago=10)
    assert check()["opened"] == [f"failure_rate:{QUEUE}"]
    finished({AttemptOutcome.SUCCEEDED: 100})
    assert check()["resolved"] == [f"failure_rate:{QUEUE}"]
    finished({AttemptOutcome.DEAD: 8})  # 11 of 208: past 5 %
    assert check()["opened"] == [f"failure_rate:{QUEUE}"]
    assert Alert.objects.get(key=f"failure_rate:{QUEUE}", status="open").severity == "critical"
    # Six minutes on, the 100 that ended ten minutes ago have left the window: 8 dead of
    # 108 is still critical; ten more and nothing is left to judge.
    assert [f.severity for f in found("failure_rate", later(6))] == ["critical"]
    assert check(later(16))["resolved"] == [f"failure_rate:{QUEUE}"]


def test_the_checks_read_history_rows_and_count_no_attempt_twice(settings):
    """A 5-minute bucket inside the window comes from its history row (written by the
    snapshot from the ledger), the minutes after it from the roll-ups; the roll-ups of
    the bucket's own minutes, which a worker wrote too, are not added again."""
    settings.ALERT_THRESHOLDS.update(average_run_seconds=1.0, throughput_warning_per_hour=8000.0)
    now = timezone.now()
    bucket = bucket_start(now) - dt.timedelta(minutes=10)
    at = bucket + dt.timedelta(minutes=2)
    for outcome, count in ((AttemptOutcome.SUCCEEDED, 97), (AttemptOutcome.RETRYING, 3)):
        for _ in range(count):
            ended_attempt(
                queue=QUEUE, outcome=outcome, duration_ms=1500, wait_ms=1000, finished_at=at
            )
    finished(
        {AttemptOutcome.SUCCEEDED: 97, AttemptOutcome.RETRYING: 3},
        duration_ms=1500,
        wait_ms=1000,
        at=at,
    )
    snapshot(bucket + dt.timedelta(minutes=5, seconds=31))
    row = QueueStat.objects.get(queue=QUEUE, bucket=bucket)
    assert (row.attempts, row.run_ms_total, row.wait_histogram) == (100, 150_000, {"7": 100})
    # a job waiting keeps the throughput check on: 100 in 15 min is 400/hour, not 800
    queueing.enqueue("queueing.ping", queue=QUEUE)

    by_kind = {f.kind: f for f in evaluate(now) if f.queue in (QUEUE, "all")}
    assert (by_kind["failure_rate"].severity, by_kind["failure_rate"].value) == ("warning", 0.03)
    assert by_kind["run_time"].value == 1.5
    assert (by_kind["latency"].severity, by_kind["latency"].value) == ("warning", 1000.0)
    assert by_kind["throughput"].value == 400.0

    # Redis emptied (a restart): the history row alone gives the same verdicts.
    delete_keys("taskyard:minute:*")
    assert {f.kind for f in evaluate(now) if f.queue in (QUEUE, "all")} == set(by_kind)
    # Demo rows are made up: no alert reads them.
    QueueStat.objects.filter(queue=QUEUE).update(is_demo=True)
    assert found("failure_rate", now) == [] and found("run_time", now) == []


# --- a paused queue ---------------------------------------------------------------------


def test_a_paused_queue_raises_no_latency_alert_during_or_after_the_pause():
    pause_queue(QUEUE, reason="test")
    started_after_waiting(600.0)
    assert found("latency") == []
    resume_queue(QUEUE)
    Job.objects.all().delete()
    # Resumed: the backlog starts now after waiting ten minutes, all of it the pause's,
    # and the first of it has already ended (its wait, as the worker counted it, includes
    # the pause).
    started_after_waiting(600.0)
    finished({AttemptOutcome.SUCCEEDED: 20}, wait_ms=600_000)
    assert found("latency") == []
    # The same waits on a queue nobody paused are a critical latency alert.
    started_after_waiting(600.0, queue="routing")
    assert [f.severity for f in evaluate() if f.kind == "latency"] == ["critical"]


# --- answers ----------------------------------------------------------------------------


def operator() -> User:
    user = User.objects.create_user("ops", password="correct horse battery")
    user.groups.add(Group.objects.get(name="admin"))
    return user


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]


def test_an_acknowledged_alert_is_quiet_until_it_gets_worse_then_resolves_aloud():
    finished({AttemptOutcome.SUCCEEDED: 97, AttemptOutcome.RETRYING: 3})
    assert check()["opened"] == [f"failure_rate:{QUEUE}"]
    alert = Alert.objects.get(key=f"failure_rate:{QUEUE}")
    alert_actions.acknowledge(alert.id, user=operator(), note="provider flaky, watching")
    finished({AttemptOutcome.RETRYING: 1})
    assert check() == {"opened": [], "escalated": [], "reminded": [], "resolved": []}
    assert len(mail.outbox) == 1

    finished({AttemptOutcome.DEAD: 6})  # past 5 %: worse than what was acknowledged
    assert check()["escalated"] == [f"failure_rate:{QUEUE}"]
    alert.refresh_from_db()
    assert alert.severity == "critical" and alert.acknowledged_at is None
    assert alert.note == "provider flaky, watching"
    assert "CRITICAL escalated" in subjects()[-1]

    assert check(later(16))["resolved"] == [f"failure_rate:{QUEUE}"]  # out of the window
    assert subjects()[-1].startswith("[taskyard] resolved")


def test_a_snoozed_alert_says_nothing_until_the_snooze_ends_then_once():
    finished({AttemptOutcome.SUCCEEDED: 97, AttemptOutcome.RETRYING: 3})
    check()
    alert = Alert.objects.get(key=f"failure_rate:{QUEUE}")
    alert_actions.snooze(alert.id, user=operator(), minutes=30)
    finished({AttemptOutcome.DEAD: 10})
    assert check()["escalated"] == [f"failure_rate:{QUEUE}"]
    assert len(mail.outbox) == 1  # escalated while snoozed: recorded, not sent

    Alert.objects.filter(id=alert.id).update(snoozed_until=timezone.now() - dt.timedelta(seconds=1))
    assert check()["reminded"] == [f"failure_rate:{QUEUE}"]
    assert "still open after its snooze" in subjects()[-1]
    assert check()["reminded"] == []  # once


def test_answers_refuse_bad_values_and_resolved_alerts():
    user = operator()
    now = timezone.now()
    alert = Alert.objects.create(
        key="backlog:x", kind="backlog", message="m", opened_at=now, last_seen_at=now
    )
    for minutes in (0, alert_actions.MAX_SNOOZE_MINUTES + 1, "60", True):
        with pytest.raises(alert_actions.AlertActionError):
            alert_actions.snooze(alert.id, user=user, minutes=minutes)
    Alert.objects.filter(id=alert.id).update(status="resolved", resolved_at=now)
    with pytest.raises(alert_actions.AlertActionError, match="resolved"):
        alert_actions.acknowledge(alert.id, user=user)


def test_the_api_answers_with_field_errors_and_conflicts_and_audits_what_it_did():
    client = client_for(operator())
    now = timezone.now()
    alert = Alert.objects.create(
        key="backlog:y", kind="backlog", message="m", opened_at=now, last_seen_at=now
    )
    api = f"/api/v1/queue/alerts/{alert.id}"
    bad = client.post(f"{api}/snooze", {"minutes": "soon"}, format="json")
    assert bad.status_code == 400 and "minutes" in bad.json()["error"]["fields"]
    assert client.post(f"{api}/snooze", {"minutes": 0}, format="json").status_code == 400
    assert client.post(f"{api}/acknowledge", {"nope": 1}, format="json").status_code == 400
    assert client.post("/api/v1/queue/alerts/999999/acknowledge", {}).status_code == 404

    answered = client.post(f"{api}/acknowledge", {"note": "on it"}, format="json").json()
    assert answered["acknowledged_by"] == "ops" and answered["note"] == "on it"
    listed = client.get("/api/v1/queue/alerts?status=open").json()["results"]
    assert [a["id"] for a in listed] == [alert.id] and listed[0]["acknowledged_at"]
    assert client.get("/api/v1/queue/alerts?status=nope").status_code == 400
    event = AuditEvent.objects.get(action="alert.acknowledge")
    assert event.before["acknowledged"] is False and event.after["acknowledged"] is True

    Alert.objects.filter(id=alert.id).update(status="resolved", resolved_at=now)
    refused = client.post(f"{api}/unacknowledge", format="json")
    assert refused.status_code == 409
    assert not AuditEvent.objects.filter(action="alert.unacknowledge").exists()


def test_the_admin_acknowledges_with_a_note_after_asking(client):
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    now = timezone.now()
    alert = Alert.objects.create(
        key="backlog:z", kind="backlog", message="m", opened_at=now, last_seen_at=now
    )
    url = "/admin/queueing/alert/"
    form = {"action": "acknowledge_alerts", "_selected_action": [alert.id]}
    asking = client.post(url, form)
    assert asking.status_code == 200 and b'name="note"' in asking.content
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    client.post(url, {**form, "confirm": "yes", "note": "rebooting the worker"})
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.note == "rebooting the worker"

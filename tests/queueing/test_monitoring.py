"""Probes and Prometheus metrics, against real workers, beat, relay and Redis."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

import queueing
from queueing.models import Job, JobStatus
from queueing.registry import live_workers
from tests.harness import start_beat, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "scrape-token-for-tests"


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def test_metrics_need_the_token_or_a_staff_login(client, metrics_token, admin_user):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200


@pytest.mark.worker
def test_metrics_count_a_run_of_real_jobs(client, metrics_token, celery_worker, relay):
    before = scrape(client)
    jobs = [queueing.enqueue("queueing.ping", [f"m{n}"]) for n in range(6)]
    failing = queueing.enqueue("tests.fail", ["permanent", "metrics-perm"])
    wait_until(
        lambda: (
            Job.objects.filter(id__in=[j.id for j in jobs], status=JobStatus.SUCCEEDED).count() == 6
            and Job.objects.get(id=failing.id).status == JobStatus.DEAD
        ),
        timeout=30,
        message=celery_worker.log,
    )
    # The worker counts an attempt after its transaction commits: wait for the counter.
    wait_until(
        lambda: (
            value(
                scrape(client),
                "taskyard_jobs_processed_total",
                queue="default",
                task="queueing.ping",
                outcome="succeeded",
            )
            - value(
                before,
                "taskyard_jobs_processed_total",
                queue="default",
                task="queueing.ping",
                outcome="succeeded",
            )
            == 6
        ),
        timeout=10,
    )
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta("taskyard_jobs_processed_total", queue="default", task="tests.fail", outcome="dead")
        == 1
    )
    assert delta("taskyard_job_run_seconds_count", queue="default") == 7
    assert delta("taskyard_job_wait_seconds_count", queue="default") == 7
    assert value(after, "taskyard_job_run_seconds_bucket", queue="default", le="+Inf") == value(
        after, "taskyard_job_run_seconds_count", queue="default"
    )
    # Gauges read the ledger: they match the database exactly.
    succeeded = Job.objects.filter(queue="default", status=JobStatus.SUCCEEDED).count()
    assert value(after, "taskyard_jobs", queue="default", status="succeeded") == succeeded
    assert value(after, "taskyard_dead_letters", queue="default") >= 1
    assert value(after, "taskyard_workers", queue="default") >= 1
    assert value(after, "taskyard_workers", queue="isolated") == 0
    assert ("taskyard_jobs_lost_total", ()) in after


@pytest.mark.worker
def test_readiness_follows_redis_down_and_back(admin_client, client, broker, celery_worker, relay):
    PeriodicTask.objects.update(enabled=False)  # a beat here schedules nothing
    beat = start_beat()
    try:
        assert client.get("/health/live").json() == {"status": "ok"}
        wait_until(
            lambda: client.get("/health/ready").status_code == 200,
            timeout=30,
            message=lambda: client.get("/health/ready").content,
        )
        body = admin_client.get("/health/ready").json()
        names = {"database", "broker", "workers", "beat", "relay", "providers"}
        assert set(body["checks"]) == names
        assert all(check["ok"] for check in body["checks"].values())
        assert celery_worker.name in live_workers()
        # An anonymous probe learns ok/fail per check, nothing about the deployment.
        assert client.get("/health/ready").json() == {
            "status": "ok",
            "checks": dict.fromkeys(names, "ok"),
        }

        broker.stop()
        down = admin_client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["checks"]["broker"]["ok"] is False
        assert down.json()["checks"]["database"]["ok"] is True
        assert client.get("/health/ready").json()["checks"]["broker"] == "fail"

        broker.restart_empty()
        # Workers, beat and relay write their heartbeats again into the new Redis.
        wait_until(
            lambda: client.get("/health/ready").status_code == 200,
            timeout=60,
            interval=0.5,
            message=lambda: client.get("/health/ready").content,
        )
    finally:
        beat.stop()


def test_readiness_names_the_queue_without_a_worker(settings, capsys):
    settings.HEALTH_WORKER_QUEUES = ["isolated"]
    with pytest.raises(SystemExit) as exit_info:
        call_command("health", "--json")
    assert exit_info.value.code == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["workers"]["ok"] is False
    assert checks["workers"]["queues_without_worker"] == ["isolated"]

"""Database upkeep (issue 17): VACUUM (ANALYZE) of the ledger's hot tables on
PostgreSQL, ANALYZE + PRAGMA optimize on SQLite, with table sizes and bloat reported."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from maintenance import upkeep
from maintenance.models import UpkeepRun
from maintenance.tasks import database_upkeep
from queueing import Job, JobStatus
from tests.harness import wait_until

LEDGER_TABLES = {"queueing_job", "queueing_jobattempt", "django_celery_results_taskresult"}


def churn_the_ledger(count: int = 200) -> None:
    """Insert and delete finished jobs, as a day of work and pruning does."""
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            task_name="billing.send_invoice",
            queue="billing",
            status=JobStatus.SUCCEEDED,
            max_attempts=3,
            enqueued_at=now,
            finished_at=now,
            kwargs={"invoice_id": n},
        )
        for n in range(count)
    )
    Job.objects.filter(task_name="billing.send_invoice", kwargs__invoice_id__lt=count // 2).delete()


def last_vacuum(table: str):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_vacuum, n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", [table]
        )
        return cursor.fetchone()


def test_the_hot_tables_come_from_the_app_registry():
    assert set(upkeep.hot_tables()) == LEDGER_TABLES


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_upkeep_job_runs_on_a_real_worker_and_reports_sizes(celery_worker):
    churn_the_ledger()

    job_id = database_upkeep.delay().id

    job = wait_until(
        lambda: (
            Job.objects.filter(pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.DEAD])
            .exclude(status=JobStatus.DEAD, attempts__lt=1)
            .first()
        ),
        timeout=60,
        message=lambda: celery_worker.log()[-3000:],
    )
    assert job.status == JobStatus.SUCCEEDED, job.last_error_message
    result = job.result
    assert result["vendor"] == connection.vendor
    reported = {row["table"]: row for row in result["tables"]}
    assert set(reported) == LEDGER_TABLES
    assert reported["queueing_job"]["total_bytes"] > 0
    assert reported["queueing_job"]["rows"] >= 100
    run = UpkeepRun.objects.get(pk=result["upkeep_run"])
    assert {row["table"] for row in run.tables} >= LEDGER_TABLES
    if connection.vendor == "postgresql":
        assert run.maintained == sorted(LEDGER_TABLES, key=upkeep.hot_tables().index)
        # VACUUM ran (outside a transaction) and cleared the 100 deleted jobs' dead rows;
        # what is left is the few updates of jobs running meanwhile (this one's included).
        wait_until(lambda: last_vacuum("queueing_job")[0] is not None)
        assert last_vacuum("queueing_job")[1] < 100
        assert reported["queueing_job"]["dead_rows"] < 100
        assert "bloat_bytes" in reported["queueing_job"]
    else:
        assert run.reclaimable_bytes is not None
        assert "unused_bytes" in reported["queueing_job"]


@pytest.mark.django_db
def test_upkeep_refuses_to_run_inside_a_transaction():
    with pytest.raises(upkeep.UpkeepError, match="cannot run inside a transaction"):
        upkeep.run_upkeep()
    assert not UpkeepRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_upkeep_command_prints_every_ledger_table():
    churn_the_ledger(20)
    out = io.StringIO()

    call_command("upkeep", stdout=out)

    text = out.getvalue()
    assert text.startswith(f"{connection.vendor}: ")
    for table in LEDGER_TABLES:
        assert f"\n{table} " in text
    assert UpkeepRun.objects.count() == 1

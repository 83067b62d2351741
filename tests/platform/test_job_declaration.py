"""queueing.job(): a misdeclared job stops the import with a message naming the fix, and a
declared job lands on its queue with its retry policy, whatever its name (real worker)."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

import queueing
from queueing.models import Job, JobStatus
from tests.harness import wait_until

HEADER = """
from celery import shared_task
from rest_framework import serializers
from queueing import Contract, job
"""

# (declaration, what the error must say)
MISDECLARED = {
    "unknown queue": (
        "@job(queue='biling')\ndef f(x): pass",
        r"queue 'biling' is not declared; use one of default, routing, billing",
    ),
    "missing queue": ("@job(retry={'max_attempts': 2})\ndef f(x): pass", r"name its queue"),
    "typo in an option": (
        "@job(queue='default', unique_keys='x:{x}')\ndef f(x): pass",
        r"unknown option 'unique_keys'; did you mean 'unique_key'\?",
    ),
    "top-level max_attempts": (
        "@job(queue='default', max_attempts=3)\ndef f(x): pass",
        r"unknown option 'max_attempts'; use retry=\{'max_attempts': N\}",
    ),
    "Celery max_retries": (
        "@job(queue='default', max_retries=3)\ndef f(x): pass",
        r"Celery's 'max_retries' conflicts with the job ledger; use retry=\{'max_attempts': N\}",
    ),
    "Celery autoretry_for": (
        "@job(queue='default', autoretry_for=(ValueError,))\ndef f(x): pass",
        r"'autoretry_for' conflicts .* permanent_for=",
    ),
    "Celery per-worker rate": (
        "@job(queue='default', rate_limit='10/m')\ndef f(x): pass",
        r"rate_limit names a global limit of TASKYARD_RATE_LIMITS, not a rate",
    ),
    "unknown named rate limit": (
        "@job(queue='default', rate_limit='stripe-typo')\ndef f(x): pass",
        r"rate limit 'stripe-typo' is not in TASKYARD_RATE_LIMITS; known: sendgrid, twilio",
    ),
    "unique key naming a missing argument": (
        "@job(queue='billing', unique_key='invoice:{invoice}')\ndef f(invoice_id): pass",
        r"unique_key 'invoice:\{invoice\}' names invoice, which the task does not take; "
        r"its arguments are: invoice_id",
    ),
    "concurrency key by position": (
        "@job(queue='billing', concurrency_key='c:{0}')\ndef f(customer_id): pass",
        r"name the argument",
    ),
    "roles without an API contract": (
        "@job(queue='routing', roles=('dispatcher',))\ndef f(x): pass",
        r"give api=<Contract> too",
    ),
    "API contract without roles": (
        "class A(Contract):\n    x = serializers.IntegerField()\n"
        "@job(queue='routing', api=A)\ndef f(x): pass",
        r"an API-enabled job names who may enqueue it: roles=",
    ),
    "unknown role": (
        "class A(Contract):\n    x = serializers.IntegerField()\n"
        "@job(queue='routing', api=A, roles=('dispatchr',))\ndef f(x): pass",
        r"unknown role\(s\) 'dispatchr'",
    ),
    "contract field the task does not take": (
        "class A(Contract):\n    y = serializers.IntegerField()\n"
        "@job(queue='routing', api=A)\ndef f(x): pass",
        r"contract A has field\(s\) y that the task does not take",
    ),
    "plain shared_task with Celery's max_retries": (
        "@shared_task(name='tests.decl_{uid}', max_retries=3)\ndef f(x): pass",
        r"Celery's 'max_retries' conflicts with the job ledger",
    ),
    "plain shared_task with a typo": (
        "@shared_task(name='tests.decl_{uid}', max_attemps=3)\ndef f(x): pass",
        r"unknown task option 'max_attemps'",
    ),
    "plain shared_task with a per-worker rate": (
        "@shared_task(name='tests.decl_{uid}', rate_limit='5/s')\ndef f(x): pass",
        r"Celery's rate_limit holds per worker",
    ),
}


@pytest.fixture
def task_module(tmp_path, monkeypatch):
    """Write a tasks module in a fresh package on sys.path and import it."""
    from config.celery import app

    # A finalized app registers a @shared_task at once, as in a running worker or web
    # process; an unfinalized one would defer it (and its error) to whoever finalizes.
    app.finalize(auto=True)
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(source: str):
        package = f"declapp_{uuid.uuid4().hex[:8]}"
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        uid = uuid.uuid4().hex[:8]
        body = HEADER + textwrap.dedent(source).replace("{uid}", uid)
        (tmp_path / package / "tasks.py").write_text(body)
        importlib.invalidate_caches()
        try:
            return importlib.import_module(f"{package}.tasks")
        finally:
            sys.modules.pop(f"{package}.tasks", None)

    return load


@pytest.mark.parametrize("case", list(MISDECLARED))
def test_a_misdeclared_job_fails_at_import_naming_the_fix(task_module, case):
    source, message = MISDECLARED[case]
    with pytest.raises(ImproperlyConfigured, match=message):
        task_module(source)


def test_a_declared_job_is_a_celery_task_with_its_options(task_module):
    module = task_module(
        """
        class Args(Contract):
            invoice_id = serializers.IntegerField()

        @job(queue="billing", name="tests.decl_ok_{uid}", api=Args, roles=("manager",),
             unique_key="invoice:{invoice_id}", retry={"max_attempts": 2, "base_delay": 1},
             atomic=True, priority=3, rate_limit="sendgrid")
        def send(invoice_id, copy=False):
            return invoice_id
        """
    )
    task = module.send
    assert callable(task.delay) and task(5) == 5  # still a plain callable too
    assert (task.declared_queue, task.atomic, task.declared_priority) == ("billing", True, 3)
    assert task.enqueue_roles == ("manager",) and task.rate_limit_key == "sendgrid"
    assert (task.max_attempts, task.retry_base_delay) == (2, 1)


@pytest.mark.django_db
def test_the_unique_key_template_is_filled_from_the_arguments():
    first = queueing.enqueue("sampleapp.plan_collection", kwargs={"route_id": 4}, countdown=600)
    again = queueing.enqueue("sampleapp.plan_collection", [4], countdown=600)  # positional
    other = queueing.enqueue("sampleapp.plan_collection", kwargs={"route_id": 5}, countdown=600)
    assert first.unique_key == "collection:4"
    assert again.id == first.id and other.id != first.id


def finished(job_id, timeout: float = 30) -> Job:
    def final():
        job = Job.objects.filter(id=job_id).first()
        return job if job and job.status in ("succeeded", "dead", "cancelled") else None

    return wait_until(final, timeout=timeout, message=f"job {job_id} to finish")


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.parametrize(
    ("task", "queue", "max_attempts"),
    [
        # job(queue="billing") with a name outside billing: the declaration wins.
        ("tests.declared_on_billing", "billing", 3),
        # Plain Celery @shared_task(queue="billing"): honoured, with billing's policy.
        ("tests.plain_queue_billing", "billing", 3),
        # Plain Celery, named "billing.*" but defined in the sample app: its app's queue.
        ("billing.sample_run_invoices", "sampleapp", 4),
    ],
)
def test_each_declaration_lands_on_its_queue_with_its_policy(
    celery_worker, task, queue, max_attempts
):
    from config.celery import app

    result = app.tasks[task].delay(41)
    job = finished(result.id)
    assert (job.status, job.queue, job.max_attempts) == (JobStatus.SUCCEEDED, queue, max_attempts)
    assert job.result == 41
    (attempt,) = job.attempt_rows.all()
    assert attempt.worker.startswith(celery_worker.name)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_declared_retry_policy_is_what_the_worker_applies(celery_worker):
    flaky = queueing.enqueue("sampleapp.flaky", ["x"])
    rejected = queueing.enqueue("sampleapp.rejects", ["y"])
    flaky, rejected = finished(flaky.id), finished(rejected.id)
    # retry={"max_attempts": 2}: two attempts, then a dead letter.
    assert (flaky.status, flaky.attempts, flaky.max_attempts) == (JobStatus.DEAD, 2, 2)
    # permanent_for=(ValueError,): not retried although max_attempts is 5.
    assert (rejected.status, rejected.attempts, rejected.max_attempts) == (JobStatus.DEAD, 1, 5)
    assert rejected.dead_letter.reason == "permanent"
    assert flaky.dead_letter.reason == "exhausted"

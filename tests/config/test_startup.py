"""A bad setting stops every entry point at start with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django_celery_results.backends.database import DatabaseBackend

from config.celery import app as celery_app


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(env)
    return subprocess.run(
        argv,
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


MANAGE = [sys.executable, "manage.py", "check"]
WORKER = [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=1"]


@pytest.mark.parametrize("argv", [MANAGE, WORKER], ids=["manage.py", "celery worker"])
@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "nonsense", "DATABASE_URL='nonsense' is not a database URL"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379' is not a Redis URL"),
        ("TASK_TIME_LIMIT", "long", "TASK_TIME_LIMIT='long' is not an integer"),
    ],
)
def test_bad_variable_fails_fast_with_its_name(argv, variable, value, expected):
    result = run(argv, **{variable: value})

    assert result.returncode != 0
    assert f"taskyard: configuration error: {expected}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_secret_key_is_required_without_debug():
    result = run(MANAGE, DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_migrations_check_needs_no_secret_key():
    """Checking for missing migrations signs nothing: it runs without SECRET_KEY, while
    a command that serves or signs (check, migrate, the worker) still refuses."""
    check = [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"]
    result = run(check, DEBUG="0", SECRET_KEY="")
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout
    assert run(MANAGE, DEBUG="0", SECRET_KEY="").returncode != 0


def test_visibility_timeout_must_outlast_the_hard_time_limit():
    result = run(MANAGE, TASK_TIME_LIMIT="600", BROKER_VISIBILITY_TIMEOUT="300")
    assert result.returncode != 0
    assert "BROKER_VISIBILITY_TIMEOUT=300 must be longer than TASK_TIME_LIMIT=600" in (
        result.stderr
    )


def test_celery_is_configured_for_json_and_reliable_delivery():
    conf = celery_app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    # django-celery-results' database backend (reconnecting: queueing/results.py).
    assert isinstance(celery_app.backend, DatabaseBackend) and conf.result_backend_always_retry
    assert conf.result_extended is True
    assert conf.task_acks_late is True
    assert conf.task_retry_on_worker_lost is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.beat_scheduler == "queueing.control.beat:SingleBeatScheduler"
    # Events cost a publish per job: off until Flower attaches and switches them on.
    assert conf.worker_send_task_events is False and conf.task_send_sent_event is False

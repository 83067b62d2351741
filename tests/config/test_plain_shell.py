"""After `make run` has written var/local.env once, manage.py and celery commands work from
a plain shell (no DEBUG, no SECRET_KEY in the environment); without it, a host that sets
neither is refused, as production must be."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings

from devstack.__main__ import write_local_env
from queueing.models import Job, JobOrigin, JobStatus
from tests.harness import wait_until, worker_environment


def plain_shell(var_dir, argv: list[str], **extra: str) -> subprocess.CompletedProcess:
    env = worker_environment({"VAR_DIR": str(var_dir)})
    for name in ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env.update(extra)
    return subprocess.run(
        argv, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )


def test_without_local_env_a_plain_shell_is_refused(tmp_path):
    result = plain_shell(tmp_path, [sys.executable, "manage.py", "workers", "--print"])
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_local_env_is_written_once_and_kept(tmp_path):
    path = write_local_env(tmp_path)
    first = path.read_text()
    assert "DEBUG=1" in first and "SECRET_KEY=" in first
    assert path.stat().st_mode & 0o777 == 0o600
    write_local_env(tmp_path)
    assert path.read_text() == first  # the key survives restarts: sessions stay valid


def test_manage_py_commands_work_from_a_plain_shell_after_make_run(tmp_path):
    write_local_env(tmp_path)
    for argv in (["workers", "--print"], ["check"], ["changepassword", "--help"]):
        result = plain_shell(tmp_path, [sys.executable, "manage.py", *argv])
        assert result.returncode == 0, (argv, result.stderr)
    # A variable set in the environment still wins over the file.
    refused = plain_shell(
        tmp_path, [sys.executable, "manage.py", "check"], DEBUG="0", SECRET_KEY=""
    )
    assert "SECRET_KEY is required" in refused.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_celery_call_from_a_plain_shell_is_adopted_and_run(tmp_path, celery_worker):
    write_local_env(tmp_path)
    call = ["call", "queueing.ping", "--kwargs", '{"message": "from a shell"}']
    result = plain_shell(
        tmp_path,
        [sys.executable, "-m", "celery", "-A", "config", *call],
        DJANGO_SETTINGS_MODULE="tests.settings",
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    job = wait_until(
        lambda: Job.objects.filter(id=job_id, status=JobStatus.SUCCEEDED).first(),
        timeout=30,
        message=f"job {job_id} adopted and run",
    )
    assert job.origin == JobOrigin.ADOPTED
    assert job.result["message"] == "from a shell"

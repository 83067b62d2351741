"""Flower runs behind basic auth taken from settings."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from tests.harness import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def flower():
    port = free_port()
    env = dict(
        os.environ,
        FLOWER_PORT=str(port),
        FLOWER_USER="ops",
        FLOWER_PASSWORD="flower-test-secret",
        REDIS_URL=settings.REDIS_URL,
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "flower"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: status(url) != 0, timeout=30, message="Flower to listen")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_flower_refuses_anonymous_and_wrong_credentials(flower):
    assert status(flower) == 401
    assert status(flower, "ops:wrong") == 401
    assert status(flower + "api/workers", "ops:wrong") == 401


def test_flower_accepts_the_configured_credentials(flower):
    assert status(flower, "ops:flower-test-secret") == 200


def test_flower_will_not_start_without_a_password_in_production():
    env = dict(os.environ, DEBUG="0", SECRET_KEY="x" * 50, FLOWER_PASSWORD="")
    result = subprocess.run(
        [sys.executable, "manage.py", "flower"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "FLOWER_PASSWORD is required" in result.stderr

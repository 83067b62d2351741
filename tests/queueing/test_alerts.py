"""An alert fires once while its condition lasts, resolves when it clears, and each
change reaches a real SMTP server and a signed webhook started by the test."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller

import queueing
from queueing.control.operations import cancel
from queueing.models import Alert, AlertStatus
from queueing.observe.alerts import check
from tests.harness import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_rollups")]
SECRET = "webhook-secret-for-tests"


class Inbox:
    """aiosmtpd handler: keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.ALERT_EMAILS = ["ops@example.com"]
    yield inbox
    controller.stop()


@pytest.fixture
def webhook(settings):
    calls: list[tuple[dict, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append((json.loads(body), self.headers["X-Taskyard-Signature"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/alerts"
    settings.ALERT_WEBHOOK_SECRET = SECRET
    yield calls
    server.shutdown()


def test_a_backlog_alert_fires_once_then_resolves(settings, smtp_server, webhook):
    settings.ALERT_THRESHOLDS = {**settings.ALERT_THRESHOLDS, "backlog": 2}
    settings.HEALTH_WORKER_QUEUES = []  # this test is about the backlog only
    jobs = [queueing.enqueue("queueing.ping", queue="isolated") for _ in range(3)]

    assert check()["opened"] == ["backlog:isolated"]
    assert check() == {"opened": [], "escalated": [], "reminded": [], "resolved": []}  # quiet
    assert Alert.objects.filter(key="backlog:isolated").count() == 1
    alert = Alert.objects.get(key="backlog:isolated")
    assert (alert.status, alert.value, alert.threshold) == (AlertStatus.OPEN, 3, 2)

    for job in jobs:
        cancel(job.id)
    assert check()["resolved"] == ["backlog:isolated"]
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_at is not None
    assert alert.notified_at is not None

    wait_until(lambda: len(smtp_server.messages) == 2, timeout=10)
    opened, resolved = smtp_server.messages
    assert opened["To"] == "ops@example.com"
    assert "3 jobs waiting on isolated" in opened["Subject"]
    assert resolved["Subject"].startswith("[taskyard] resolved: backlog:isolated")

    assert [payload["event"] for payload, _, _ in webhook] == ["opened", "resolved"]
    for payload, signature, body in webhook:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"
        assert payload["key"] == "backlog:isolated"

    # A new backlog later is a new alert, not the old one reopened.
    for _ in range(3):
        queueing.enqueue("queueing.ping", queue="isolated")
    assert check()["opened"] == ["backlog:isolated"]
    assert Alert.objects.filter(key="backlog:isolated").count() == 2


def test_no_worker_is_critical(settings):
    settings.HEALTH_WORKER_QUEUES = ["isolated"]
    assert "no_worker:isolated" in check()["opened"]
    assert Alert.objects.get(key="no_worker:isolated").severity == "critical"

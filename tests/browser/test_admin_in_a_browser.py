"""A real browser (headless Chromium, driven by Playwright) logs into the admin, opens
the dashboard, pauses a queue and replays a dead job; screenshots go to var/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from queueing.control.pause import resume_queue
from queueing.models import JobStatus, QueueState
from tests.factories import dead_letter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]


@pytest.fixture
def page(live_server, monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # are still plain synchronous code (Django's documented escape hatch).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_an_operator_pauses_a_queue_and_replays_a_dead_job(page, live_server, admin_user):
    letter = dead_letter("browser")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")

        page.goto(f"{live_server.url}/admin/queueing/dashboard/")
        row = page.locator('tr[data-queue="isolated"]')
        assert row.locator("td").nth(4).inner_text() == "1"  # one dead job
        assert page.locator("svg rect").count() > 0  # the charts drew
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

        # Pause the isolated queue with its button, and confirm.
        page.goto(f"{live_server.url}/admin/queueing/queuestate/")
        page.locator("tr", has_text="isolated").locator("a.button", has_text="Pause").click()
        page.click("#confirm-action")
        page.wait_for_selector("text=1 queue(s) paused.")
        assert QueueState.objects.get(name="isolated").paused
        page.screenshot(path=str(SCREENSHOTS / "queues-paused.png"), full_page=True)

        # Replay the dead job.
        page.goto(f"{live_server.url}/admin/queueing/deadletter/")
        page.locator("input.action-select").first.check()
        page.select_option("select[name=action]", "replay_letters")
        page.click("button[name=index]")
        page.click("#confirm-action")
        page.wait_for_selector("text=1 dead letter(s) replayed.")
        letter.refresh_from_db()
        assert letter.replayed_as is not None
        assert letter.replayed_as.status == JobStatus.QUEUED
        page.screenshot(path=str(SCREENSHOTS / "dead-letter-replayed.png"), full_page=True)
    finally:
        resume_queue("isolated")

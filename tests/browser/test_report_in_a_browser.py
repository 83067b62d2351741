"""A real browser (headless Chromium, Playwright) opens the daily report built from
hand-built ledger rows: the charts drew, the numbers are there; screenshot to
var/screenshots/daily-report.png. Then the operators' email of the same report, as a mail
client shows its HTML part: var/screenshots/daily-report-email.png."""

from __future__ import annotations

import pytest
from django.core import mail

from queueing.observe.report import create
from tests.browser.test_admin_in_a_browser import CHROMIUM, SCREENSHOTS, page  # noqa: F401
from tests.queueing.test_daily_report import DAY, week_of_ledger  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]


def test_an_operator_reads_the_daily_report(page, live_server, admin_user, week_of_ledger):  # noqa: F811
    create(DAY, email=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.click("text=Reports")
    page.click(f"text={DAY:%Y-%m-%d}")
    page.wait_for_selector("#hours-chart svg")
    assert page.locator("#hours-chart svg rect").count() == 2 * 24  # succeeded + failed
    billing = page.locator('#queues tr[data-queue="billing"] td')
    assert billing.nth(1).inner_text() == "13"  # jobs that day
    assert billing.nth(2).inner_text() == "4"  # the day before
    assert page.locator('#queues tr[data-queue="billing"] svg rect').count() == 3
    assert "no billing address" in page.locator("#dead-letters").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "daily-report.png"), full_page=True)


def test_the_report_email_reads_the_same_numbers(page, settings, week_of_ledger):  # noqa: F811
    settings.ALERT_EMAILS = ["ops@example.com"]
    create(DAY, email=True)

    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
    assert f"{DAY:%Y-%m-%d}" in message.subject
    html, kind = message.alternatives[0]
    assert kind == "text/html"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_content(html)
    billing = page.locator('#queues tr[data-queue="billing"] td')
    assert billing.nth(1).inner_text() == "13"  # jobs that day, as on the admin page
    assert billing.nth(2).inner_text() == "4"  # the day before
    assert "no billing address" in page.locator("body").inner_text()
    assert "/admin/" in page.locator("a").last.get_attribute("href")  # the full report
    page.screenshot(path=str(SCREENSHOTS / "daily-report-email.png"), full_page=True)

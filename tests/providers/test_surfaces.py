"""After a scripted run of provider calls, cost and health show in the admin, the API,
/metrics, readiness, alerts and queueing.explain()."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

import queueing
from devstack.fakes import stripe as stripe_fake
from queueing.control.breaker import ProviderGuard
from queueing.control.providers import check_health, provider_call
from queueing.models import Alert, AuditEvent
from queueing.observe.alerts import check as check_alerts
from queueing.observe.health import check_providers
from queueing.specs import provider_specs
from tests.api.conftest import client_for
from tests.factories import forget_provider

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def scripted_run(settings, db):
    """Three paid calls through the guard (150 % of the budget) and a health check."""
    with stripe_fake.serve() as fake:
        settings.TASKYARD_PROVIDERS = {
            **settings.TASKYARD_PROVIDERS,
            "costly": {
                "base_url": fake.url,
                "timeout": 2,
                "rate_limit": "50/s",
                "cost_per_call": 0.5,
                "monthly_budget": 1.0,
            },
        }
        forget_provider("costly")
        for _ in range(3):
            with provider_call("costly"):
                pass  # the call itself is the SDK's business; the guard records it
        health = check_health(provider_specs()["costly"])
        assert health["ok"] is True  # the fake answers (404 on /): up
        yield
        forget_provider("costly")


def test_the_api_shows_cost_budget_and_health(scripted_run):
    admin = User.objects.create_user("ops", password="x")
    admin.groups.add(Group.objects.get(name="admin"))
    response = client_for(admin).get("/api/v1/queue/providers")
    assert response.status_code == 200
    costly = next(p for p in response.json()["providers"] if p["name"] == "costly")
    assert costly["cost_today"] == pytest.approx(1.5) and costly["budget_used"] == 1.5
    assert costly["state"] == "closed" and costly["recent_calls"] == 3
    assert costly["health"]["ok"] == "True"
    customer = User.objects.create_user("customer", password="x")
    customer.groups.add(Group.objects.get(name="customer"))
    assert client_for(customer).get("/api/v1/queue/providers").status_code == 403


def test_the_admin_page_shows_each_provider(scripted_run, admin_client):
    page = admin_client.get("/admin/queueing/providers/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-provider="costly"' in html and "1.5 USD" in html and "150 %" in html


def test_an_operator_resets_a_provider_after_confirming(scripted_run, admin_client):
    spec = provider_specs()["costly"]
    for _ in range(5):
        ProviderGuard(spec).record("failure", probe=False)
    assert admin_client.get("/admin/queueing/providers/costly/reset/").status_code == 200
    assert ProviderGuard(spec).peek() is not None  # asking changed nothing
    response = admin_client.post("/admin/queueing/providers/costly/reset/")
    assert response.status_code == 302
    assert ProviderGuard(spec).peek() is None
    assert AuditEvent.objects.filter(action="provider.reset", target_id="costly").exists()


def test_metrics_export_calls_cost_latency_and_breaker_state(scripted_run, client, settings):
    settings.METRICS_TOKEN = TOKEN
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert 'taskyard_provider_calls_total{outcome="ok",provider="costly"} 3.0' in body
    assert 'taskyard_provider_cost_total{provider="costly"} 1.5' in body
    assert 'taskyard_provider_breaker_state{provider="costly"} 0.0' in body
    assert 'taskyard_provider_call_seconds_count{provider="costly"} 3.0' in body


def test_readiness_reports_an_open_provider_as_degraded_not_down(scripted_run):
    assert check_providers()["ok"] is True
    spec = provider_specs()["costly"]
    for _ in range(5):
        ProviderGuard(spec).record("failure", probe=False)
    result = check_providers()
    assert result["ok"] is True and result["status"] == "degraded"
    assert result["degraded"]["costly"]["state"] == "open"


def test_the_budget_raises_an_alert(scripted_run, mailoutbox, fresh_rollups):
    check_alerts()
    alert = Alert.objects.get(key="provider_budget:costly", status="open")
    assert alert.severity == "critical" and "150%" in alert.message


@pytest.mark.django_db
def test_explain_says_which_provider_holds_the_job():
    spec = provider_specs()["fakepay"]
    ProviderGuard(spec).reset()
    for _ in range(3):
        ProviderGuard(spec).record("failure", probe=False)
    try:
        job = queueing.enqueue("sampleapp.charge", [1])
        reasons = {r["code"]: r for r in queueing.explain(job)}
        assert "provider_unavailable" in reasons
        assert "fakepay" in reasons["provider_unavailable"]["message"]
        assert reasons["provider_unavailable"]["until"] is not None
    finally:
        ProviderGuard(spec).reset()

"""Billing's API: who may start a run, the dry run, strict arguments, invoices seen by
their own customer only, PDF downloads."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User

from billing import documents, services
from billing.models import BillingRun, Invoice
from queueing import Job
from tests.api.conftest import client_for
from tests.billing import factories
from tests.harness import delete_keys

TODAY = dt.date(2026, 12, 1)


def user(role: str, name: str | None = None) -> User:
    account = User.objects.create_user(name or f"{role}-user", password="correct horse battery")
    account.groups.add(Group.objects.get(name=role))
    return account


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:throttle:*", "taskyard:limit:*")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"), [("manager", 202), ("admin", 202), ("dispatcher", 403), ("customer", 403)]
)
def test_who_may_start_a_billing_run(role, expected):
    response = client_for(user(role)).post(
        "/api/v1/queue/billing", {"period": "2026-11"}, format="json"
    )
    assert response.status_code == expected, response.content
    if expected == 202:
        job = Job.objects.get(id=response.json()["id"])
        assert (job.task_name, job.kwargs) == ("billing.run_billing", {"period": "2026-11"})
        assert response["Location"].endswith(f"/jobs/{job.id}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period": "2026-13"}, "period"),
        ({"period": "last month"}, "period"),
        ({"period": 202611}, "period"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"customer": "x" * 41}, "customer"),
        ({"period": "2026-11", "customers": ["A"]}, "customers"),
    ],
)
def test_bad_arguments_are_400s_naming_the_field_and_write_nothing(body, field):
    response = client_for(user("manager")).post("/api/v1/queue/billing", body, format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json())
    assert not Job.objects.filter(task_name="billing.run_billing").exists()


@pytest.mark.django_db
def test_a_dry_run_answers_the_invoices_it_would_issue_and_writes_nothing():
    factories.tax_rule()
    owner = factories.billed_customer()
    factories.billed_customer()
    client = client_for(user("manager"))
    response = client.post(
        "/api/v1/queue/billing", {"period": "2026-11", "dry_run": True}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["truncated"], len(body["invoices"])) == (2, False, 2)
    first = body["invoices"][0]
    assert first["customer"] == owner.code and first["currency"] == "EUR"
    # 12.50 fee + 4 Tuesday pickups x 6.50 = 38.50; 21 % per line: 2.63 + 5.46 = 8.09
    assert (first["subtotal"], first["tax"], first["total"]) == ("38.50", "8.09", "46.59")
    assert not Invoice.objects.exists() and not BillingRun.objects.exists()
    assert not Job.objects.filter(task_name__startswith="billing.").exists()

    one = client.post(
        "/api/v1/queue/billing",
        {"period": "2026-11", "customer": owner.code, "dry_run": True},
        format="json",
    )
    assert [invoice["customer"] for invoice in one.json()["invoices"]] == [owner.code]
    unknown = client.post(
        "/api/v1/queue/billing", {"customer": "NOPE", "dry_run": True}, format="json"
    )
    assert unknown.status_code == 400 and "NOPE" in str(unknown.json())


@pytest.mark.django_db
def test_a_customer_sees_only_their_own_invoices():
    factories.tax_rule()
    period = services.get_period("2026-11")
    mine, theirs = factories.billed_customer(), factories.billed_customer()
    me = user("customer", "customer-me")
    mine.user = me
    mine.save()
    my_invoice, _ = services.issue_invoice(mine, period, today=TODAY)
    their_invoice, _ = services.issue_invoice(theirs, period, today=TODAY)

    client = client_for(me)
    listed = client.get("/api/v1/queue/billing/invoices")
    assert listed.status_code == 200
    assert [row["number"] for row in listed.json()["results"]] == [my_invoice.number]
    detail = client.get(f"/api/v1/queue/billing/invoices/{my_invoice.id}")
    assert detail.status_code == 200 and len(detail.json()["lines"]) == 2
    assert client.get(f"/api/v1/queue/billing/invoices/{their_invoice.id}").status_code == 404
    assert client.get(f"/api/v1/queue/billing/invoices/{their_invoice.id}/pdf").status_code == 404

    manager = client_for(user("manager"))
    everything = manager.get("/api/v1/queue/billing/invoices", {"period": "2026-11"})
    assert everything.json()["count"] == 2
    assert manager.get("/api/v1/queue/billing/invoices", {"perod": "2026-11"}).status_code == 400
    assert client_for(None).get("/api/v1/queue/billing/invoices").status_code == 401


@pytest.mark.django_db
def test_the_pdf_is_rendered_by_a_job_then_downloaded():
    factories.tax_rule()
    owner = factories.billed_customer()
    invoice, _ = services.issue_invoice(owner, services.get_period("2026-11"), today=TODAY)
    client = client_for(user("manager"))
    url = f"/api/v1/queue/billing/invoices/{invoice.id}/pdf"

    pending = client.get(url)
    assert pending.status_code == 202 and pending["Retry-After"] == "30"
    job = Job.objects.get(id=pending.json()["job"])
    assert job.task_name == "billing.render_document" and job.kwargs == {
        "invoice_id": invoice.id,
        "kind": "invoice",
    }
    assert client.get(url).json()["job"] == str(job.id)  # one rendering job, not two

    documents.store(invoice, "invoice")  # what the job does
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and invoice.number.encode() in response.content
    assert f"invoice-{invoice.number}.pdf" in response["Content-Disposition"]
    assert client.get(url, {"kind": "receipt"}).status_code == 404  # not paid
    assert client.get(url, {"kind": "bill"}).status_code == 400

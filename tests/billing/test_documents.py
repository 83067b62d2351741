"""Invoice and receipt PDFs: rendered by a real worker's job, stored once, shown in the
admin with the billing-run page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User

import queueing
from billing import documents, runs, services
from billing.models import BillingRun, Document
from tests.billing import factories
from tests.harness import wait_until

TODAY = dt.date(2026, 12, 1)


def issued(name: str = "Ayşe Kaya"):
    factories.tax_rule()
    owner = factories.customer(name=name)
    deal = factories.contract(owner)
    factories.pickups(deal, factories.weekly(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
    invoice, _ = services.issue_invoice(owner, services.get_period("2026-11"), today=TODAY)
    return invoice


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_render_job_stores_each_pdf_once(celery_worker):
    invoice = issued()
    jobs = [
        queueing.enqueue("billing.render_document", kwargs={"invoice_id": invoice.id, "kind": kind})
        for kind in ("invoice", "receipt", "invoice")
    ]
    assert jobs[0].id == jobs[2].id  # one active job per document
    wait_until(lambda: Document.objects.count() == 2, timeout=30, message="both PDFs stored")
    for document in Document.objects.all():
        content = bytes(document.content)
        assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    assert documents.store(invoice, "invoice").sha256 == Document.objects.get(kind="invoice").sha256


@pytest.mark.django_db
def test_names_outside_latin_1_do_not_break_the_pdf():
    assert documents.render(issued("Ωmega 株式会社"), "invoice").startswith(b"%PDF-")


@pytest.mark.django_db
def test_admin_pages_show_invoices_with_pdf_links_and_the_billing_run(client):
    admin = User.objects.create_superuser("boss", "boss@example.org", "pw")
    client.force_login(admin)
    factories.tax_rule()
    owner = factories.billed_customer()
    with_run = runs.start("2026-11")
    run = BillingRun.objects.get(id=with_run["run"])
    runs.bill(owner.id, "2026-11", run.id)
    invoice = owner.invoices.get()

    page = client.get(f"/admin/billing/billingrun/{run.id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "1 customers enqueued, 1 invoiced" in text and f"{invoice.total}" in text
    listing = client.get("/admin/billing/invoice/")
    pdf_url = f"/admin/billing/invoice/{invoice.id}/pdf/invoice/"
    assert pdf_url in listing.content.decode()
    assert client.get(pdf_url).status_code == 302  # not rendered yet: a job, and a message
    documents.store(invoice, "invoice")
    response = client.get(pdf_url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    for model in (
        "customer",
        "servicecontract",
        "serviceevent",
        "payment",
        "creditnote",
        "reminder",
        "taxrule",
    ):
        assert client.get(f"/admin/billing/{model}/").status_code == 200, model

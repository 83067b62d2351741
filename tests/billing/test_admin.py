"""The billing admin's operator actions: bill a period (all or selected customers),
charge again, credit in full; each confirmed, permission-checked and audited; and the
billing-run page's failed charges."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from billing import runs, services
from billing.models import BillingRun, CreditNote, InvoiceStatus
from queueing import Job, JobStatus
from queueing.models import AuditEvent
from tests.billing import factories

pytestmark = pytest.mark.django_db

RUNS = "/admin/billing/billingrun/"
BILL = "/admin/billing/billingrun/bill/"
INVOICES = "/admin/billing/invoice/"
CUSTOMERS = "/admin/billing/customer/"


@pytest.fixture
def boss(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    return client


def staff(client, *permissions: str):
    """A staff user who may look at billing, plus ``permissions``."""
    account = User.objects.create_user("clerk", password="pw", is_staff=True)
    names = ["view_billingrun", "view_invoice", "view_customer", *permissions]
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="billing", codename__in=names)
    )
    client.force_login(account)
    return client


def run_jobs() -> list[Job]:
    return list(Job.objects.filter(task_name="billing.run_billing").order_by("enqueued_at"))


def invoice_of(owner=None):
    factories.tax_rule()
    owner = owner or factories.billed_customer()
    return runs.bill(owner.id, "2026-11") and owner.invoices.get()


def test_bill_a_period_asks_first_then_enqueues_the_api_s_job_once_and_audits(boss):
    previous = services.resolve_period_label("previous")
    listing = boss.get(RUNS).content.decode()
    assert f'href="{BILL}"' in listing and "Bill a period" in listing
    form = boss.get(BILL)
    assert form.status_code == 200 and f'value="{previous}"' in form.content.decode()
    assert not run_jobs()  # asking wrote nothing

    response = boss.post(BILL, {"confirm": "yes", "period": "2026-11"})
    assert response.status_code == 302 and response["Location"] == RUNS
    [job] = run_jobs()
    assert job.kwargs == {"period": "2026-11", "customer": ""}
    assert job.enqueued_by.username == "boss"
    event = AuditEvent.objects.get(action="billing.run")
    assert (event.target_type, event.target_id, event.actor_name) == (
        "billing_period",
        "2026-11",
        "boss",
    )
    assert event.after == {"customer": "all", "job": str(job.id)} and event.reason == "via admin"

    boss.post(BILL, {"confirm": "yes", "period": "2026-11"})  # a double click
    assert run_jobs() == [job]


def test_bill_a_period_refuses_a_malformed_month_and_writes_nothing(boss):
    page = boss.post(BILL, {"confirm": "yes", "period": "2026-13"})
    assert page.status_code == 200 and "2026-13: not a month (YYYY-MM)" in page.content.decode()
    assert not run_jobs() and not AuditEvent.objects.exists()


def test_bill_the_selected_customers_one_run_each(boss):
    first, second = factories.billed_customer(), factories.billed_customer()
    ids = [str(first.id), str(second.id)]
    page = boss.post(CUSTOMERS, {"action": "bill_selected", "_selected_action": ids})
    text = page.content.decode()
    assert page.status_code == 200 and first.code in text and "2 selected customer(s)" in text
    assert not run_jobs()
    boss.post(
        CUSTOMERS,
        {"action": "bill_selected", "_selected_action": ids, "confirm": "yes", "period": "2026-11"},
    )
    assert sorted(j.kwargs["customer"] for j in run_jobs()) == sorted([first.code, second.code])
    assert AuditEvent.objects.filter(action="billing.run").count() == 2


def test_billing_needs_the_permission_to_start_runs(client):
    clerk = staff(client)
    assert clerk.get(BILL).status_code == 403
    assert clerk.post(BILL, {"confirm": "yes", "period": "2026-11"}).status_code == 403
    assert "Bill a period" not in clerk.get(RUNS).content.decode()
    owner = factories.billed_customer()
    clerk.post(
        CUSTOMERS,
        {
            "action": "bill_selected",
            "_selected_action": [owner.id],
            "confirm": "yes",
            "period": "2026-11",
        },
    )
    assert not run_jobs()


def test_charge_again_charges_issued_unpaid_invoices_only(boss):
    invoice = invoice_of()
    paid = invoice_of(factories.billed_customer())
    paid.status = InvoiceStatus.PAID
    paid.save()
    Job.objects.filter(task_name="billing.charge_invoice").update(status=JobStatus.DEAD)
    selected = [invoice.id, paid.id]
    page = boss.post(INVOICES, {"action": "charge_again", "_selected_action": selected})
    assert page.status_code == 200 and "Yes, go ahead" in page.content.decode()
    response = boss.post(
        INVOICES,
        {"action": "charge_again", "_selected_action": selected, "confirm": "yes"},
        follow=True,
    )
    text = response.content.decode()
    assert "1 charge job(s) enqueued" in text and f"{paid.number} (it is paid)" in text
    waiting = Job.objects.filter(task_name="billing.charge_invoice").exclude(status=JobStatus.DEAD)
    [job] = waiting
    assert job.kwargs == {"invoice_id": invoice.id} and job.enqueued_by.username == "boss"
    event = AuditEvent.objects.get(action="invoice.charge")
    assert event.target_id == invoice.number and event.after == {"job": str(job.id)}


def test_credit_in_full_is_confirmed_audited_and_refuses_a_second_credit(boss):
    invoice = invoice_of()
    action = {"action": "credit_in_full", "_selected_action": [invoice.id]}
    assert "Yes, go ahead" in boss.post(INVOICES, action).content.decode()
    assert not CreditNote.objects.exists()
    boss.post(INVOICES, {**action, "confirm": "yes"})
    note = CreditNote.objects.get()
    event = AuditEvent.objects.get(action="invoice.credit")
    assert event.target_id == invoice.number and event.after["credit_note"] == note.number
    again = boss.post(INVOICES, {**action, "confirm": "yes"}, follow=True).content.decode()
    assert (
        f"Not credited: invoice {invoice.number} is already credited in full ({note.number})"
        in again
    )
    assert (
        CreditNote.objects.count() == 1
        and AuditEvent.objects.filter(action="invoice.credit").count() == 1
    )


def test_charging_and_crediting_need_their_permissions(client):
    invoice = invoice_of()
    clerk = staff(client)
    for action in ("charge_again", "credit_in_full"):
        clerk.post(INVOICES, {"action": action, "_selected_action": [invoice.id], "confirm": "yes"})
    assert Job.objects.filter(task_name="billing.charge_invoice").count() == 1  # the run's own
    assert not CreditNote.objects.exists() and not AuditEvent.objects.exists()


def test_the_run_page_shows_failed_charges_until_charged_again(boss):
    factories.tax_rule()
    owner = factories.billed_customer()
    run = BillingRun.objects.get(id=runs.start("2026-11")["run"])
    runs.bill(owner.id, "2026-11", run.id)
    invoice = owner.invoices.get()
    Job.objects.filter(task_name="billing.charge_invoice").update(
        status=JobStatus.DEAD,
        last_error_message="invoice 2026-000001: card declined (card_declined)",
    )
    [failed] = runs.summary(run)["failed_charges"]
    assert failed["invoice"] == invoice.number and "card declined" in failed["error"]
    page = boss.get(f"{RUNS}{run.id}/change/").content.decode()
    assert "Failed charges" in page and f"/admin/billing/invoice/{invoice.id}/change/" in page
    runs.request_charge(invoice.id)  # charged again: not failed (yet)
    assert runs.summary(run)["failed_charges"] == []

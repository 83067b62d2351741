"""Money invariants: proration and tax worked by hand, lines that add up to the totals on
every invoice, credit notes that net an invoice to zero, numbers without gaps."""

from __future__ import annotations

import datetime as dt
import random
import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing import calculation as calc
from billing import services
from billing.models import (
    CreditNote,
    EventKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NumberSequence,
    ServiceEvent,
)
from tests.billing import factories

NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
TODAY = dt.date(2026, 12, 1)


def terms(fee: str, start: dt.date, end: dt.date | None = None, proration: str = "daily"):
    return calc.ContractTerms(
        id=1,
        description="240L",
        base_monthly_fee=Decimal(fee),
        price_per_pickup=Decimal("6.50"),
        price_extra_pickup=Decimal("15.00"),
        price_overweight_per_kg=Decimal("0.35"),
        start_date=start,
        end_date=end,
        proration=proration,
    )


def test_rounding_is_half_up_to_the_cent():
    assert calc.round_money(Decimal("0.125")) == Decimal("0.13")
    assert calc.round_money(Decimal("2.675")) == Decimal("2.68")  # float would say 2.67
    assert calc.round_money(Decimal("0.105")) == Decimal("0.11")  # banker's would say 0.10
    assert calc.round_money(Decimal("-0.125")) == Decimal("-0.13")
    assert calc.round_money(Decimal("1.004999")) == Decimal("1.00")


@pytest.mark.parametrize(
    ("fee", "start", "end", "proration", "expected", "days"),
    [
        # Started on 16 November: 15 of 30 days, 30.00 x 15 / 30 = 15.00.
        ("30.00", dt.date(2026, 11, 16), None, "daily", "15.00", 15),
        # Ended on 10 November: 10 of 30 days, 19.99 x 10 / 30 = 6.6633.. -> 6.66.
        ("19.99", dt.date(2025, 1, 1), dt.date(2026, 11, 10), "daily", "6.66", 10),
        # From 5 to 20 November: 16 days, 45.00 x 16 / 30 = 24.00.
        ("45.00", dt.date(2026, 11, 5), dt.date(2026, 11, 20), "daily", "24.00", 16),
        # One day (the 30th): 12.50 / 30 = 0.41666.. -> 0.42.
        ("12.50", dt.date(2026, 11, 30), None, "daily", "0.42", 1),
        # "full": any active day is the whole fee.
        ("12.50", dt.date(2026, 11, 30), None, "full", "12.50", 1),
        # The whole month, started long before: the fee as it is.
        ("12.50", dt.date(2024, 3, 1), None, "daily", "12.50", 30),
        # Ended before the period: nothing.
        ("12.50", dt.date(2024, 3, 1), dt.date(2026, 10, 31), "daily", "0.00", 0),
    ],
)
def test_proration_worked_by_hand(fee, start, end, proration, expected, days):
    amount, active, in_period = calc.prorated_fee(terms(fee, start, end, proration), *NOV)
    assert (amount, active, in_period) == (Decimal(expected), days, 30)


def test_proration_in_february_counts_its_28_days():
    # From 10 February 2027: 19 of 28 days, 25.00 x 19 / 28 = 16.964.. -> 16.96.
    feb = calc.month_bounds("2027-02")
    assert calc.prorated_fee(terms("25.00", dt.date(2027, 2, 10)), *feb) == (
        Decimal("16.96"),
        19,
        28,
    )


def test_tax_is_per_line_rounded_half_up_and_summed():
    lines = [
        calc.LineDraft("fee", f"line {i}", Decimal(1), Decimal("0.50"), Decimal("0.50"))
        for i in range(3)
    ]
    taxed = calc.apply_tax(lines, Decimal("0.21"))
    # 0.50 x 21 % = 0.105 -> 0.11 per line; the invoice's tax is the sum: 0.33 (per
    # invoice it would be 1.50 x 21 % = 0.315 -> 0.32: the documented choice matters).
    assert [line.tax for line in taxed] == [Decimal("0.11")] * 3
    assert calc.totals(taxed) == calc.Totals(Decimal("1.50"), Decimal("0.33"), Decimal("1.83"))


def test_lines_of_a_month_worked_by_hand():
    contract = terms("12.50", dt.date(2026, 11, 16))
    usage = [
        calc.Usage(1, "pickup", dt.date(2026, 11, 17), Decimal(1)),
        calc.Usage(1, "pickup", dt.date(2026, 11, 24), Decimal(1)),
        calc.Usage(1, "overweight", dt.date(2026, 11, 24), Decimal("12.5")),
        calc.Usage(1, "pickup", dt.date(2026, 12, 1), Decimal(1)),  # next period
    ]
    lines = calc.apply_tax(calc.compute_lines([contract], usage, *NOV), Decimal("0.21"))
    assert [(line.description, line.net, line.tax) for line in lines] == [
        # 12.50 x 15 / 30 = 6.25; tax 1.3125 -> 1.31
        ("Base fee 240L (15/30 days)", Decimal("6.25"), Decimal("1.31")),
        # 2 x 6.50 = 13.00; tax 2.73
        ("Pickups 240L", Decimal("13.00"), Decimal("2.73")),
        # 12.5 kg x 0.35 = 4.375 -> 4.38; tax 0.9198 -> 0.92
        ("Overweight (kg) 240L", Decimal("4.38"), Decimal("0.92")),
    ]
    assert calc.totals(lines) == calc.Totals(Decimal("23.63"), Decimal("4.96"), Decimal("28.59"))


def test_stripe_amounts_are_integer_cents():
    assert calc.to_minor_units(Decimal("28.59"), "EUR") == 2859
    with pytest.raises(ValueError, match="zero-decimal"):
        calc.to_minor_units(Decimal("100"), "JPY")


def _assert_adds_up(invoice: Invoice) -> None:
    lines = list(invoice.lines.all())
    assert lines, invoice.number
    assert sum(line.net for line in lines) == invoice.subtotal
    assert sum(line.tax for line in lines) == invoice.tax_total
    assert invoice.subtotal + invoice.tax_total == invoice.total
    for line in lines:
        assert line.tax == calc.round_money(line.net * line.tax_rate)
        assert line.net + line.tax == line.total


@pytest.mark.django_db
def test_every_invoice_of_a_varied_run_adds_up_to_its_totals():
    factories.tax_rule()
    rng = random.Random(14)
    period = services.get_period("2026-11")
    for _ in range(40):
        owner = factories.customer()
        start = NOV[0] + dt.timedelta(days=rng.randrange(-60, 29))
        end = rng.choice([None, start + dt.timedelta(days=rng.randrange(1, 90))])
        deal = factories.contract(
            owner,
            base_monthly_fee=Decimal(rng.randrange(100, 9999)) / 100,
            price_per_pickup=Decimal(rng.randrange(100, 3000)) / 100,
            start_date=start,
            end_date=end,
            proration=rng.choice(["daily", "full"]),
        )
        factories.pickups(deal, factories.weekly(*NOV, weekday=rng.randrange(7)))
        factories.pickups(
            deal,
            [NOV[0] + dt.timedelta(days=rng.randrange(30))],
            EventKind.OVERWEIGHT,
            str(rng.randrange(1, 40000) / 1000),
        )
        services.issue_invoice(owner, period, today=TODAY)
    invoices = Invoice.objects.prefetch_related("lines")
    assert invoices.count() > 30  # contracts that ended before November have nothing
    for invoice in invoices:
        _assert_adds_up(invoice)


@pytest.mark.django_db
def test_an_invoice_is_issued_once_per_customer_and_period():
    factories.tax_rule()
    owner = factories.billed_customer()
    period = services.get_period("2026-11")
    first, created = services.issue_invoice(owner, period, today=TODAY)
    again, created_again = services.issue_invoice(owner, period, today=TODAY)
    assert created and not created_again and again == first
    assert first.number == "2026-000001" and first.due_date == dt.date(2026, 12, 15)
    assert Invoice.objects.count() == 1


@pytest.mark.django_db
def test_a_credit_note_nets_the_invoice_to_zero():
    factories.tax_rule()
    owner = factories.billed_customer()
    invoice, _ = services.issue_invoice(owner, services.get_period("2026-11"), today=TODAY)
    before = list(invoice.lines.values_list("net", "tax", "total"))
    note = services.credit_invoice(invoice, "wrong container size")
    invoice.refresh_from_db()
    assert note.number.startswith("CN-") and note.total == -invoice.total
    assert note.subtotal + invoice.subtotal == note.tax_total + invoice.tax_total == 0
    assert services.invoice_balance(invoice) == Decimal("0.00")
    assert invoice.status == InvoiceStatus.VOID
    assert list(invoice.lines.values_list("net", "tax", "total")) == before  # not edited


@pytest.mark.django_db
def test_an_invoice_its_credit_notes_cover_is_not_credited_again():
    factories.tax_rule()
    owner = factories.billed_customer()
    invoice, _ = services.issue_invoice(owner, services.get_period("2026-11"), today=TODAY)
    first = services.credit_invoice(invoice, "wrong container size", today=TODAY)
    with pytest.raises(services.AlreadyCredited) as refused:
        services.credit_invoice(invoice, "clicked twice", today=TODAY)
    assert str(refused.value) == (
        f"invoice {invoice.number} is already credited in full ({first.number})"
    )
    assert list(CreditNote.objects.values_list("number", flat=True)) == [first.number]
    # Nothing half-written: the refused credit took no number either.
    assert services.next_number("CN", TODAY.year) == 2
    assert services.invoice_balance(invoice) == Decimal("0.00")


@pytest.mark.django_db
def test_a_missing_tax_rule_is_permanent_and_issues_nothing():
    owner = factories.billed_customer()
    with pytest.raises(services.MissingTaxRule, match="NL"):
        services.issue_invoice(owner, services.get_period("2026-11"), today=TODAY)
    assert not Invoice.objects.exists() and not NumberSequence.objects.exists()


@pytest.mark.django_db
def test_a_rolled_back_invoice_gives_its_number_back():
    factories.tax_rule()
    period = services.get_period("2026-11")
    first, second = factories.billed_customer(), factories.billed_customer()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.issue_invoice(first, period, today=TODAY)
        raise RuntimeError("the job failed after issuing")
    invoice, _ = services.issue_invoice(second, period, today=TODAY)
    assert invoice.number == "2026-000001"


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuers_get_consecutive_numbers():
    """Threads with their own connections issue at once: numbers 1..N, no gap, no repeat
    (PostgreSQL: the sequence row's lock; SQLite: BEGIN IMMEDIATE)."""
    factories.tax_rule()
    period = services.get_period("2026-11")
    owners = [factories.billed_customer() for _ in range(24)]
    errors: list[BaseException] = []

    def issue(batch):
        try:
            for owner in batch:
                with transaction.atomic():
                    services.issue_invoice(owner, period, today=TODAY)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue, args=(owners[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    numbers = sorted(int(n.split("-")[1]) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 25))
    assert InvoiceLine.objects.filter(invoice__isnull=True).count() == 0
    assert ServiceEvent.objects.count() > 0

"""Money arithmetic of an invoice: proration, lines, tax and totals, as plain functions
on Decimals (no database), so every rule is testable by hand.

Rules (docs/billing.md, "Money and tax"):
- every amount is rounded to cents half-up (ROUND_HALF_UP) once, where it is computed;
- tax is computed **per line** (net x rate, rounded half-up), and the invoice's tax is the
  sum of its lines' taxes, so the lines always add up to the totals exactly;
- a base fee is prorated by day (fee x active days / days in the period) or charged in
  full for any active day, as the contract says.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(amount: Decimal) -> Decimal:
    """``amount`` to cents, half-up: 0.125 → 0.13, -0.125 → -0.13."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def month_bounds(label: str) -> tuple[dt.date, dt.date]:
    """First and last day of month ``label`` ("YYYY-MM"); ValueError if malformed."""
    try:
        year_text, month_text = label.split("-")
        year, month = int(year_text), int(month_text)
        if len(year_text) != 4 or len(month_text) != 2:
            raise ValueError
        last = calendar.monthrange(year, month)[1]
    except (ValueError, calendar.IllegalMonthError):
        raise ValueError(f"{label!r} is not a month like 2026-11") from None
    return dt.date(year, month, 1), dt.date(year, month, last)


def previous_month_label(today: dt.date) -> str:
    first = today.replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


@dataclass(frozen=True)
class ContractTerms:
    """What a contract says about money (a ServiceContract, or a test's own)."""

    id: int
    description: str
    base_monthly_fee: Decimal
    price_per_pickup: Decimal
    price_extra_pickup: Decimal
    price_overweight_per_kg: Decimal
    start_date: dt.date
    end_date: dt.date | None
    proration: str  # "daily" or "full"


@dataclass(frozen=True)
class Usage:
    """One service event: contract id, kind, date, quantity."""

    contract_id: int
    kind: str
    date: dt.date
    quantity: Decimal


@dataclass(frozen=True)
class LineDraft:
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Decimal


@dataclass(frozen=True)
class TaxedLine:
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def active_days(
    start: dt.date, end: dt.date | None, period_start: dt.date, period_end: dt.date
) -> int:
    """Days of the period (both ends included) on which a contract from ``start`` to
    ``end`` (its last day; None: open-ended) is active."""
    first = max(start, period_start)
    last = period_end if end is None else min(end, period_end)
    return max(0, (last - first).days + 1)


def prorated_fee(
    terms: ContractTerms, period_start: dt.date, period_end: dt.date
) -> tuple[Decimal, int, int]:
    """(fee for the period, active days, days in the period)."""
    days = (period_end - period_start).days + 1
    active = active_days(terms.start_date, terms.end_date, period_start, period_end)
    if active == 0:
        return ZERO, 0, days
    if terms.proration == "full" or active == days:
        return round_money(terms.base_monthly_fee), active, days
    return round_money(terms.base_monthly_fee * active / days), active, days


USAGE_LABELS = {
    "pickup": "Pickups",
    "extra_pickup": "Extra pickups",
    "overweight": "Overweight (kg)",
}


def _unit_price(terms: ContractTerms, kind: str) -> Decimal:
    return {
        "pickup": terms.price_per_pickup,
        "extra_pickup": terms.price_extra_pickup,
        "overweight": terms.price_overweight_per_kg,
    }[kind]


def compute_lines(
    contracts: Sequence[ContractTerms],
    usage: Iterable[Usage],
    period_start: dt.date,
    period_end: dt.date,
) -> list[LineDraft]:
    """The invoice lines of one customer for one period: per contract its (prorated) base
    fee, then one line per kind of service event in the period (quantity summed, priced
    at the contract's unit price). Events outside the period are ignored."""
    quantities: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for event in usage:
        if period_start <= event.date <= period_end:
            quantities[(event.contract_id, event.kind)] += event.quantity
    lines: list[LineDraft] = []
    for terms in sorted(contracts, key=lambda t: (t.start_date, t.id)):
        fee, active, days = prorated_fee(terms, period_start, period_end)
        if active:
            note = "" if fee == round_money(terms.base_monthly_fee) else f" ({active}/{days} days)"
            lines.append(
                LineDraft("fee", f"Base fee {terms.description}{note}", Decimal(1), fee, fee)
            )
        for kind, label in USAGE_LABELS.items():
            quantity = quantities.get((terms.id, kind))
            if not quantity:
                continue
            price = _unit_price(terms, kind)
            lines.append(
                LineDraft(
                    kind,
                    f"{label} {terms.description}",
                    quantity,
                    price,
                    round_money(quantity * price),
                )
            )
    return lines


def apply_tax(lines: Iterable[LineDraft], rate: Decimal) -> list[TaxedLine]:
    """Tax per line: net x rate rounded half-up to cents."""
    taxed = []
    for line in lines:
        tax = round_money(line.net * rate)
        taxed.append(
            TaxedLine(
                line.kind,
                line.description,
                line.quantity,
                line.unit_price,
                line.net,
                rate,
                tax,
                line.net + tax,
            )
        )
    return taxed


def totals(lines: Iterable[TaxedLine]) -> Totals:
    """The invoice's totals: sums of its lines (no rounding of its own)."""
    subtotal = tax = ZERO
    for line in lines:
        subtotal += line.net
        tax += line.tax
    return Totals(subtotal, tax, subtotal + tax)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Stripe's integer amount: cents for EUR/USD (two-decimal currencies only)."""
    if currency.upper() in ZERO_DECIMAL_CURRENCIES:
        raise ValueError(f"{currency} is a zero-decimal currency; billing supports cents only")
    return int((round_money(amount) * 100).to_integral_value())


# https://docs.stripe.com/currencies#zero-decimal: amounts are not in cents.
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)

"""Service events from outside billing: completed pickups and extras reported by routing
or a driver (``record_event``, ``POST /api/v1/queue/billing/events``) and imported rows
(datasync's ``service_events`` target, which uses the rules below). docs/billing.md,
"Service events".

An event is known by its source's own id, ``external_ref`` (``visit:<id>``, an import
row's id): recording it again changes nothing, a changed event is updated while it is not
billed, and an event on an issued invoice is never changed (the invoice is not edited:
credit it). A new event, or a change, dated in a period the customer is already invoiced
for is refused too: that invoice will not be issued again, so the event would never be
billed. The contract is found by the customer's code and the date (the customer's
contract active that day), or by the contract's own code when the customer has several.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from billing.models import (
    EventKind,
    EventSource,
    Invoice,
    InvoiceStatus,
    ServiceContract,
    ServiceEvent,
)
from billing.services import BillingError

log = logging.getLogger(__name__)

Errors = dict[str, list[str]]


class EventRefused(BillingError):
    """An event that cannot be recorded as given: ``errors`` names the field(s)."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


class EventBilled(EventRefused):
    """The change would touch an issued invoice (or a period already invoiced)."""


@dataclass(frozen=True)
class Wanted:
    """What names an event's contract: the customer's code, the contract's code (or
    None) and the event's date."""

    customer: str
    contract: str | None
    date: dt.date


class ContractFinder:
    """The contracts of a batch of events, loaded in two queries, then found in memory."""

    def __init__(self, wanted: Iterable[Wanted]) -> None:
        wanted = list(wanted)
        customers = {w.customer for w in wanted}
        codes = {w.contract for w in wanted if w.contract}
        rows = (
            ServiceContract.objects.select_related("customer")
            .filter(Q(customer__code__in=customers) | Q(code__in=codes))
            .order_by("start_date", "id")  # messages that list contracts, the same each run
        )
        self.by_customer: dict[str, list[ServiceContract]] = {}
        self.by_code: dict[str, ServiceContract] = {}
        for contract in rows:
            self.by_customer.setdefault(contract.customer.code, []).append(contract)
            if contract.code:
                self.by_code[contract.code] = contract

    def find(self, wanted: Wanted) -> ServiceContract:
        """The contract the event is for; EventRefused naming the field otherwise."""
        if wanted.contract:
            contract = self.by_code.get(wanted.contract)
            if contract is None:
                raise EventRefused({"contract": [f"no contract {wanted.contract!r}"]})
            if contract.customer.code != wanted.customer:
                raise EventRefused(
                    {
                        "contract": [
                            f"contract {wanted.contract!r} is customer "
                            f"{contract.customer.code}'s, not {wanted.customer}'s"
                        ]
                    }
                )
            return contract
        contracts = self.by_customer.get(wanted.customer, [])
        if not contracts:
            raise EventRefused({"customer": [f"no customer {wanted.customer!r} with a contract"]})
        active = [c for c in contracts if _active_on(c, wanted.date)]
        if len(active) == 1:
            return active[0]
        if not active:
            raise EventRefused(
                {"date": [f"customer {wanted.customer} has no contract active on {wanted.date}"]}
            )
        codes = ", ".join(c.code or f"#{c.id} (no code)" for c in active)
        raise EventRefused(
            {
                "contract": [
                    f"customer {wanted.customer} has {len(active)} contracts active on "
                    f"{wanted.date} ({codes}): give the contract's code"
                ]
            }
        )


def _active_on(contract: ServiceContract, day: dt.date) -> bool:
    return contract.start_date <= day and (contract.end_date is None or day <= contract.end_date)


def invoice_covering(customer_id: int, day: dt.date) -> Invoice | None:
    """The customer's invoice (issued, paid, void or uncollectible: anything but a draft)
    of the period containing ``day``, if there is one."""
    return (
        Invoice.objects.filter(
            customer_id=customer_id, period__start__lte=day, period__end__gte=day
        )
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("period")
        .first()
    )


def billing_problems(event: ServiceEvent | None, contract: ServiceContract, day: dt.date) -> Errors:
    """Why ``event`` (None: a new one) may not be written with ``contract`` and ``day``;
    empty when it may. Call only for a real change: an unchanged event is always fine."""
    if event is not None:
        invoice = invoice_covering(event.contract.customer_id, event.date)
        if invoice is not None:
            return {
                "external_ref": [
                    f"event {event.external_ref} is billed on invoice {invoice.number} "
                    f"({invoice.status}), which is never edited: not changed "
                    "(credit the invoice to correct it)"
                ]
            }
    invoice = invoice_covering(contract.customer_id, day)
    if invoice is not None:
        return {
            "date": [
                f"customer {contract.customer.code} is already invoiced for "
                f"{invoice.period.label} ({invoice.number}): an event on {day} would never "
                "be billed"
            ]
        }
    return {}


def check_values(kind: str, quantity: Decimal, source: str) -> Errors:
    errors: Errors = {}
    if kind not in EventKind.values:
        errors["kind"] = [f"one of {', '.join(EventKind.values)}"]
    if quantity <= 0:
        errors["quantity"] = ["more than 0"]
    if source not in EventSource.values:
        errors["source"] = [f"one of {', '.join(EventSource.values)}"]
    return errors


def record_event(
    *,
    external_ref: str,
    customer: str,
    day: dt.date,
    source: str,
    kind: str = EventKind.PICKUP,
    quantity: Decimal = Decimal("1"),
    contract: str | None = None,
) -> tuple[ServiceEvent, str]:
    """Record a completed pickup or extra reported by ``source`` (routing, driver,
    manual): returns the event and "created", "updated" or "unchanged". Idempotent on
    ``external_ref`` (say ``visit:<route visit id>``): the same report again is
    "unchanged", whoever sends it. EventRefused (EventBilled for invoiced periods) naming
    the field, with nothing written, when it cannot be recorded."""
    problems = check_values(kind, quantity, source)
    if not external_ref:
        problems["external_ref"] = ["required: the source's own id of the event"]
    if problems:
        raise EventRefused(problems)
    target = ContractFinder([Wanted(customer, contract, day)]).find(Wanted(customer, contract, day))
    for _ in range(2):  # a concurrent first report of the same ref: read it back once
        try:
            with transaction.atomic():
                return _record(external_ref, target, day, source, kind, quantity)
        except IntegrityError:
            continue
    raise BillingError(f"event {external_ref}: could not record it (concurrent writes)")


def _record(
    ref: str,
    contract: ServiceContract,
    day: dt.date,
    source: str,
    kind: str,
    quantity: Decimal,
) -> tuple[ServiceEvent, str]:
    event = (
        ServiceEvent.objects.select_for_update()
        .select_related("contract__customer")
        .filter(external_ref=ref)
        .first()
    )
    values = {"contract_id": contract.id, "date": day, "kind": kind, "quantity": quantity}
    if event is not None and all(getattr(event, k) == v for k, v in values.items()):
        return event, "unchanged"
    problems = billing_problems(event, contract, day)
    if problems:
        raise EventBilled(problems)
    if event is None:
        event = ServiceEvent.objects.create(external_ref=ref, source=source, **values)
        outcome = "created"
    else:
        for name, value in values.items():
            setattr(event, name, value)
        event.save(update_fields=["contract", "date", "kind", "quantity"])
        outcome = "updated"
    log.info(
        "service event %s %s (%s): %s %s x %s for %s",
        ref,
        outcome,
        source,
        kind,
        day,
        quantity,
        contract.customer.code,
    )
    return event, outcome

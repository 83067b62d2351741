"""The models a sync writes, each through a small adapter (docs/datasync.md).

A target declares its model, its natural key (how a record finds an existing row the
first time), the fields a source may set, the fields our side owns (pushed outbound, never
taken from a source), references to other models by code, and what a deletion at the
source does. Values travel in a canonical JSON form (decimals quantised, times in ISO), so
the hash of what a source sent equals the hash of our row after writing it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from billing import events
from billing.models import Customer, EventKind, EventSource, ServiceContract, ServiceEvent
from notifications import reminders
from notifications.models import Booking, BookingStatus, Recipient
from routing.models import Depot, ServicePoint, Vehicle

Values = dict[str, Any]
Errors = dict[str, list[str]]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TRUE_WORDS = {"1", "true", "yes", "y", "x", "on", "checked"}
FALSE_WORDS = {"0", "false", "no", "n", "", "off"}


def _weekday(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text)
    if text[:3] in WEEKDAYS:
        return WEEKDAYS.index(text[:3])
    raise ValueError(f"{value!r} is not a weekday")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not yes/no")


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _phone(value: Any) -> str:
    text = str(value).strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    return f"+{digits}" if text.startswith(("+", "00")) else digits


# The transformations a field map may declare, applied in order before validation.
TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "strip": lambda v: v.strip() if isinstance(v, str) else v,
    "lower": lambda v: v.lower() if isinstance(v, str) else v,
    "upper": lambda v: v.upper() if isinstance(v, str) else v,
    "title": lambda v: v.title() if isinstance(v, str) else v,
    "int": lambda v: int(str(v).strip()) if v not in (None, "") else v,
    "decimal": lambda v: _decimal(v) if v not in (None, "") else v,
    "float": lambda v: float(str(v).strip().replace(",", ".")) if v not in (None, "") else v,
    "bool": _bool,
    "weekday": lambda v: _weekday(v) if v not in (None, "") else v,
    "phone": lambda v: _phone(v) if v not in (None, "") else v,
    "first": lambda v: v[0] if isinstance(v, list) and v else v,  # linked/lookup cells
    "kg_from_tonnes": lambda v: int(_decimal(v) * 1000) if v not in (None, "") else v,
}


def digest(values: Mapping[str, Any]) -> str:
    """The content hash of canonical values (order of keys does not matter)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(model_field: models.Field, value: Any) -> Any:
    """The JSON form of a cleaned value, equal for equal values whatever their source."""
    if value is None:
        return None
    if isinstance(model_field, models.DecimalField):
        step = Decimal(1).scaleb(-(model_field.decimal_places or 0))
        return str(Decimal(value).quantize(step))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class Target:
    """How a sync reads and writes one of our models."""

    name: str
    model: type[models.Model]
    key: str
    fields: tuple[str, ...]
    required: tuple[str, ...] = ()
    owned: tuple[str, ...] = ()  # ours: pushed outbound, never written from a source
    references: Mapping[str, tuple[type[models.Model], str]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # on create, when unmapped
    retire_field: str | None = None  # set False when the record is deleted at the source
    modified_field: str | None = None  # our row's last change, for "newest wins"

    # -- reading --------------------------------------------------------------------

    def model_field(self, name: str) -> models.Field:
        found = self.model._meta.get_field(name)
        if not isinstance(found, models.Field):
            raise ValueError(f"{self.model.__name__}.{name} is a relation, not a field")
        return found

    def missing_for_create(self, mapped: Iterable[str], defaults: Mapping[str, Any]) -> list[str]:
        """Model fields a create needs that neither the map nor the defaults give."""
        given = {*mapped, *defaults, *self.defaults}
        needed = []
        for model_field in self.model._meta.concrete_fields:
            name = model_field.name
            if name in given or model_field.primary_key or name in self.owned:
                continue
            optional = (
                model_field.null
                or model_field.blank
                or model_field.has_default()
                or getattr(model_field, "auto_now", False)
                or getattr(model_field, "auto_now_add", False)
            )
            if not optional:
                needed.append(name)
        return needed

    def parse(self, field_map: Mapping[str, Any], raw: Mapping[str, Any]) -> tuple[Values, Errors]:
        """The record's canonical values for the mapped fields, or the errors per field."""
        values: Values = {}
        errors: Errors = {}
        for name, spec in field_map.items():
            external, transforms = (
                (spec, []) if isinstance(spec, str) else (spec["from"], spec.get("transforms", []))
            )
            value = raw.get(external)
            try:
                for transform in transforms:
                    value = TRANSFORMS[transform](value)
            except (ValueError, TypeError, InvalidOperation) as exc:
                errors[name] = [f"{external}: {exc}"]
                continue
            if value in (None, "", []):
                if name in self.required or name == self.key:
                    errors[name] = [f"{external}: missing"]
                    continue
                value = None
            if name in self.references:
                values[name] = None if value is None else str(value)
                continue
            model_field = self.model_field(name)
            if value is None:
                if model_field.null:
                    values[name] = None
                elif model_field.has_default():
                    values[name] = canonical(model_field, model_field.get_default())
                elif model_field.blank:
                    values[name] = ""
                else:
                    errors[name] = [f"{external}: missing"]
                continue
            try:
                values[name] = canonical(model_field, model_field.clean(value, None))
            except ValidationError as exc:
                errors[name] = [f"{external}: {message}" for message in exc.messages]
        return values, errors

    def check_references(self, batch: list[Values]) -> dict[int, Errors]:
        """Errors (by position in ``batch``) of references to rows we do not have."""
        problems: dict[int, Errors] = {}
        for name, (model, lookup) in self.references.items():
            wanted = {v[name] for v in batch if v.get(name) is not None}
            if not wanted:
                continue
            known = set(
                model._default_manager.filter(**{f"{lookup}__in": wanted}).values_list(
                    lookup, flat=True
                )
            )
            for position, values in enumerate(batch):
                if values.get(name) is not None and values[name] not in known:
                    problems.setdefault(position, {})[name] = [
                        f"no {model._meta.verbose_name} {values[name]!r}"
                    ]
        return problems

    def queryset(self) -> models.QuerySet[Any]:
        return self.model._default_manager.select_related(*self.references)

    def load(self, pks: Iterable[int]) -> dict[int, models.Model]:
        return {obj.pk: obj for obj in self.queryset().filter(pk__in=list(pks))}

    def load_by_keys(self, keys: Iterable[str]) -> dict[str, models.Model]:
        rows = self.queryset().filter(**{f"{self.key}__in": list(keys)})
        return {str(getattr(obj, self.key)): obj for obj in rows}

    def local_values(self, obj: models.Model, names: Iterable[str]) -> Values:
        values: Values = {}
        for name in names:
            if name in self.references:
                related = getattr(obj, name)
                lookup = self.references[name][1]
                values[name] = None if related is None else str(getattr(related, lookup))
            else:
                values[name] = canonical(self.model_field(name), getattr(obj, name))
        return values

    def modified_at(self, obj: models.Model) -> dt.datetime | None:
        return getattr(obj, self.modified_field) if self.modified_field else None

    # -- writing --------------------------------------------------------------------

    def _python(self, values: Values, pks: dict[tuple[str, str], int] | None = None) -> Values:
        """Model attribute values from canonical values (references resolved by code;
        ``pks`` caches the look-ups across a batch)."""
        result: Values = {}
        pks = {} if pks is None else pks
        for name, value in values.items():
            if name in self.references:
                model, lookup = self.references[name]
                if value is not None and (name, value) not in pks:
                    found = model._default_manager.filter(**{lookup: value})
                    pks[(name, value)] = found.values_list("pk", flat=True)[0]
                result[f"{name}_id"] = None if value is None else pks[(name, value)]
            else:
                result[name] = None if value is None else self.model_field(name).to_python(value)
        return result

    def create(self, batch: list[Values], defaults: Mapping[str, Any]) -> list[models.Model]:
        pks: dict[tuple[str, str], int] = {}
        rows = [
            self.model(**{**self.defaults, **defaults, **self._python(values, pks)})
            for values in batch
        ]
        return list(self.model._default_manager.bulk_create(rows))

    def update(self, changes: list[tuple[models.Model, Values]]) -> None:
        touched: set[str] = set()
        pks: dict[tuple[str, str], int] = {}
        for obj, values in changes:
            for attribute, value in self._python(values, pks).items():
                setattr(obj, attribute, value)
                touched.add(attribute)
        if changes and touched:
            self.model._default_manager.bulk_update([obj for obj, _ in changes], sorted(touched))

    def retire(self, objs: list[models.Model]) -> None:
        """What a deletion at the source does to our rows: deactivate them when the model
        has a flag; otherwise keep them (other rows refer to them) and only unlink."""
        if self.retire_field and objs:
            pks = [obj.pk for obj in objs]
            self.model._default_manager.filter(pk__in=pks).update(**{self.retire_field: False})

    def check_write(self, obj: models.Model | None, values: Values) -> Errors:
        """Why the record may not be written to ``obj`` (None: a new row), per field;
        empty when it may. Asked only when the sync is about to create or change a row."""
        return {}


class BookingTarget(Target):
    """Bookings go through notifications' own services so their reminders follow."""

    def create(self, batch: list[Values], defaults: Mapping[str, Any]) -> list[models.Model]:
        created: list[models.Model] = []
        for values in batch:
            python = self._python(values)
            recipient = Recipient.objects.get(pk=python["recipient_id"])
            created.append(
                reminders.create_booking(
                    python["ref"],
                    recipient.ref,
                    python["scheduled_for"],
                    python.get("location") or "",
                )
            )
        return created

    def update(self, changes: list[tuple[models.Model, Values]]) -> None:
        for obj, values in changes:
            if not isinstance(obj, Booking):
                raise TypeError(f"a booking target updates bookings, not {obj!r}")
            python = self._python(values)
            moved = python.get("scheduled_for")
            rest = {k: v for k, v in python.items() if k != "scheduled_for"}
            if rest:
                Booking.objects.filter(pk=obj.pk).update(**rest)
            if moved is not None and moved != obj.scheduled_for:
                if obj.status == BookingStatus.SCHEDULED:
                    reminders.move_booking(obj.ref, moved)
                else:
                    Booking.objects.filter(pk=obj.pk).update(scheduled_for=moved)

    def retire(self, objs: list[models.Model]) -> None:
        for obj in objs:
            if getattr(obj, "status", None) == BookingStatus.SCHEDULED:
                reminders.cancel_booking(str(getattr(obj, "ref", "")))


class ServiceEventTarget(Target):
    """Billing's service events, by the rules of billing/events.py: the contract found by
    the customer's code and the date (or the contract's code), an event on an issued
    invoice never changed, nothing new dated in a period already invoiced."""

    def _wanted(self, values: Values) -> events.Wanted:
        # A valid record has both: a source must map them (missing_for_create).
        return events.Wanted(
            customer=values["customer"],
            contract=values.get("contract"),
            date=dt.date.fromisoformat(values["date"]),
        )

    def missing_for_create(self, mapped: Iterable[str], defaults: Mapping[str, Any]) -> list[str]:
        mapped = list(mapped)
        # The contract is found from the customer's code when it is not named.
        missing = super().missing_for_create([*mapped, "contract"], defaults)
        return missing if "customer" in mapped else ["customer", *missing]

    def check_references(self, batch: list[Values]) -> dict[int, Errors]:
        """Unknown codes, then the contract of each event (stored under ``contract`` as
        its code, when the map names the contract, so our row hashes alike)."""
        problems = super().check_references(batch)
        finder = events.ContractFinder(
            self._wanted(v) for i, v in enumerate(batch) if i not in problems
        )
        for position, values in enumerate(batch):
            if position in problems:
                continue
            try:
                contract = finder.find(self._wanted(values))
            except events.EventRefused as exc:
                problems[position] = exc.errors
                continue
            if "contract" in values:
                values["contract"] = contract.code
        return problems

    def queryset(self) -> models.QuerySet[Any]:
        return self.model._default_manager.select_related("contract__customer")

    def local_values(self, obj: models.Model, names: Iterable[str]) -> Values:
        if not isinstance(obj, ServiceEvent):
            raise TypeError(f"a service event target reads service events, not {obj!r}")
        values: Values = {}
        for name in names:
            if name == "customer":
                values[name] = obj.contract.customer.code
            elif name == "contract":
                values[name] = obj.contract.code
            else:
                values[name] = canonical(self.model_field(name), getattr(obj, name))
        return values

    def check_write(self, obj: models.Model | None, values: Values) -> Errors:
        if obj is not None and not isinstance(obj, ServiceEvent):
            raise TypeError(f"a service event target writes service events, not {obj!r}")
        wanted = self._wanted(values)
        contract = events.ContractFinder([wanted]).find(wanted)
        return events.billing_problems(obj, contract, wanted.date)

    def _attributes(self, batch: list[Values]) -> list[Values]:
        """Model attributes per record (the contract resolved), in order."""
        finder = events.ContractFinder(self._wanted(v) for v in batch)
        rows = []
        for values in batch:
            contract = finder.find(self._wanted(values))
            plain = {k: v for k, v in values.items() if k not in ("customer", "contract")}
            rows.append({**self._python(plain), "contract_id": contract.id})
        return rows

    def create(self, batch: list[Values], defaults: Mapping[str, Any]) -> list[models.Model]:
        rows = [
            ServiceEvent(**{**self.defaults, **defaults, **attributes})
            for attributes in self._attributes(batch)
        ]
        return list(ServiceEvent.objects.bulk_create(rows))

    def update(self, changes: list[tuple[models.Model, Values]]) -> None:
        touched: set[str] = set()
        rows: list[ServiceEvent] = []
        batch = [values for _, values in changes]
        for (obj, _), attributes in zip(changes, self._attributes(batch), strict=True):
            if not isinstance(obj, ServiceEvent):
                raise TypeError(f"a service event target updates service events, not {obj!r}")
            for attribute, value in attributes.items():
                setattr(obj, attribute, value)
                touched.add(attribute)
            rows.append(obj)
        if rows:
            ServiceEvent.objects.bulk_update(rows, sorted(touched))


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            name="customers",
            model=Customer,
            key="code",
            fields=(
                "code",
                "name",
                "email",
                "billing_address",
                "region",
                "currency",
                "payment_terms_days",
            ),
            required=("code", "name"),
            owned=("stripe_customer_id",),
        ),
        Target(
            name="service_points",
            model=ServicePoint,
            key="code",
            fields=(
                "code",
                "customer_ref",
                "customer_name",
                "address",
                "lat",
                "lon",
                "depot",
                "container",
                "containers",
                "demand_kg",
                "demand_m3",
                "service_minutes",
                "window_start",
                "window_end",
                "pickup_weekday",
                "required",
                "prize",
                "active",
            ),
            required=("code", "customer_name", "lat", "lon"),
            owned=("current_sequence",),
            references={"depot": (Depot, "code")},
            retire_field="active",
        ),
        Target(
            name="vehicles",
            model=Vehicle,
            key="code",
            fields=(
                "code",
                "name",
                "depot",
                "driver_name",
                "driver_phone",
                "capacity_kg",
                "capacity_m3",
                "shift_start",
                "shift_end",
                "max_route_minutes",
                "cost_per_km",
                "cost_per_hour",
                "active",
            ),
            required=("code", "name", "depot"),
            references={"depot": (Depot, "code")},
            retire_field="active",
        ),
        BookingTarget(
            name="bookings",
            model=Booking,
            key="ref",
            fields=("ref", "recipient", "scheduled_for", "location"),
            required=("ref", "recipient", "scheduled_for"),
            owned=("status",),
            references={"recipient": (Recipient, "ref")},
            modified_field="updated_at",
        ),
        ServiceEventTarget(
            name="service_events",
            model=ServiceEvent,
            key="external_ref",
            fields=("external_ref", "customer", "contract", "kind", "date", "quantity"),
            required=("external_ref", "customer", "date"),
            references={"customer": (Customer, "code"), "contract": (ServiceContract, "code")},
            defaults={"kind": EventKind.PICKUP, "source": EventSource.IMPORT},
        ),
    )
}


def target_for(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; one of {', '.join(TARGETS)}") from None

"""Route optimisation's tables: depots, vehicles, facilities, service points, runs, routes.

docs/routing.md explains each constraint field and how a run's plan is read. Demo rows
(routing/demo.py) carry codes starting "DEMO-" and `is_demo=True`.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

LAT = [MinValueValidator(-90), MaxValueValidator(90)]
LON = [MinValueValidator(-180), MaxValueValidator(180)]


class Place(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True, default="")
    lat = models.FloatField(validators=LAT)
    lon = models.FloatField(validators=LON)
    is_demo = models.BooleanField(default=False)

    class Meta:
        abstract = True
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Depot(Place):
    """Where trucks are parked: routes start and end here."""


class FacilityKind(models.TextChoices):
    LANDFILL = "landfill", "Landfill"
    TRANSFER = "transfer", "Transfer station"


class Facility(Place):
    """Where trucks unload mid-shift (a reload point): the truck leaves empty."""

    kind = models.CharField(max_length=16, choices=FacilityKind.choices)
    unload_minutes = models.PositiveIntegerField(default=15)
    opens = models.TimeField(null=True, blank=True)
    closes = models.TimeField(null=True, blank=True)

    class Meta(Place.Meta):
        verbose_name_plural = "facilities"
        constraints = [
            # Either end may be open (from midnight / until midnight), but a facility
            # that closes before it opens could never be used.
            models.CheckConstraint(
                condition=models.Q(opens__isnull=True)
                | models.Q(closes__isnull=True)
                | models.Q(opens__lt=models.F("closes")),
                name="routing_facility_hours_ordered",
            )
        ]

    def clean(self) -> None:
        super().clean()
        if self.opens is not None and self.closes is not None and self.opens >= self.closes:
            raise ValidationError({"closes": "must be after the opening time"})


class Vehicle(models.Model):
    """A truck, its driver and its shift. Capacity in kg and m³ (two load dimensions)."""

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    depot = models.ForeignKey(Depot, on_delete=models.PROTECT, related_name="vehicles")
    end_depot = models.ForeignKey(
        Depot, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )  # None: back to `depot`
    driver_name = models.CharField(max_length=200, blank=True, default="")
    driver_phone = models.CharField(max_length=32, blank=True, default="")
    capacity_kg = models.PositiveIntegerField()
    capacity_m3 = models.DecimalField(max_digits=7, decimal_places=3)
    shift_start = models.TimeField()
    shift_end = models.TimeField()
    max_route_minutes = models.PositiveIntegerField(null=True, blank=True)
    cost_per_km = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("1.20"))
    cost_per_hour = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("35.00"))
    reload_facilities = models.ManyToManyField(Facility, blank=True, related_name="vehicles")
    max_reloads = models.PositiveIntegerField(null=True, blank=True)  # None: unlimited
    active = models.BooleanField(default=True)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ServicePoint(models.Model):
    """A customer's container to empty on its pickup weekday."""

    code = models.CharField(max_length=32, unique=True)
    customer_ref = models.CharField(max_length=64, blank=True, default="")
    customer_name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True, default="")
    lat = models.FloatField(validators=LAT)
    lon = models.FloatField(validators=LON)
    depot = models.ForeignKey(
        Depot, on_delete=models.PROTECT, related_name="service_points", null=True, blank=True
    )
    container = models.CharField(max_length=16, blank=True, default="")
    containers = models.PositiveIntegerField(default=1)
    demand_kg = models.PositiveIntegerField()
    demand_m3 = models.DecimalField(max_digits=7, decimal_places=3)
    service_minutes = models.PositiveIntegerField(default=2)
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    pickup_weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(6)]
    )  # 0 = Monday
    # Optional stops may be skipped when the day is full, at the cost of their prize.
    required = models.BooleanField(default=True)
    prize = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    # Today's (manual) round, for the "current order" baseline: the truck that serves
    # the point now and the point's position in that truck's round.
    current_vehicle = models.ForeignKey(
        Vehicle, on_delete=models.SET_NULL, null=True, blank=True, related_name="current_round"
    )
    current_sequence = models.PositiveIntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]
        constraints = [
            # Both ends or neither: a half-open window has no meaning for the planner.
            # (NULL < x is unknown, which a CHECK lets pass: hence the explicit not-nulls.)
            models.CheckConstraint(
                condition=models.Q(window_start__isnull=True, window_end__isnull=True)
                | models.Q(
                    window_start__isnull=False,
                    window_end__isnull=False,
                    window_start__lt=models.F("window_end"),
                ),
                name="routing_sp_window_both_ends_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.customer_name}"

    def clean(self) -> None:
        super().clean()
        start, end = self.window_start, self.window_end
        if (start is None) != (end is None):
            missing = "window_end" if end is None else "window_start"
            raise ValidationError({missing: "give both ends of the time window, or neither"})
        if start is not None and end is not None and start >= end:
            raise ValidationError({"window_end": "must be after the window's start"})


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Stopped by an operator: the best plan found so far is kept in `stats` only (not
    # routes): it is not the day's plan.
    CANCELLED = "cancelled", "Cancelled"


class OptimizationRun(models.Model):
    """One route optimisation: what went in (snapshot + hash), what came out, how long."""

    job_id = models.UUIDField(null=True, blank=True, unique=True)  # the ledger's job
    day = models.DateField(null=True, blank=True)
    depot = models.ForeignKey(Depot, on_delete=models.SET_NULL, null=True, blank=True)
    input_snapshot = models.JSONField()
    input_hash = models.CharField(max_length=64, db_index=True)
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    progress = models.FloatField(default=0.0)  # 0-100
    objective = models.BigIntegerField(null=True, blank=True)  # cost units (1e-5 EUR)
    cost = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    distance_m = models.BigIntegerField(null=True, blank=True)
    duration_s = models.BigIntegerField(null=True, blank=True)
    baseline = models.JSONField(default=dict, blank=True)
    improvement_pct = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    dropped = models.JSONField(default=list, blank=True)  # [{"stop": code, "reason": ...}]
    error = models.TextField(blank=True, default="")
    cached_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["input_hash", "status", "finished_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class Route(models.Model):
    """One vehicle's route in a run's plan."""

    run = models.ForeignKey(OptimizationRun, on_delete=models.CASCADE, related_name="routes")
    vehicle = models.ForeignKey(Vehicle, on_delete=models.SET_NULL, null=True, blank=True)
    vehicle_code = models.CharField(max_length=32)
    number = models.PositiveIntegerField()  # 1.. within the run (map colour)
    start = models.TimeField()
    end = models.TimeField()
    distance_m = models.BigIntegerField()
    duration_s = models.BigIntegerField()
    stops = models.PositiveIntegerField()
    reloads = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="routing_route_number_unique")
        ]

    def __str__(self) -> str:
        return f"route {self.number} ({self.vehicle_code})"


class VisitKind(models.TextChoices):
    STOP = "stop", "Service point"
    RELOAD = "reload", "Unload at facility"


class RouteVisit(models.Model):
    """A step of a route in order: a service point, or unloading at a facility."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="visits")
    order = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=VisitKind.choices)
    code = models.CharField(max_length=32)  # the service point's or facility's code
    service_point = models.ForeignKey(
        ServicePoint, on_delete=models.SET_NULL, null=True, blank=True
    )
    facility = models.ForeignKey(Facility, on_delete=models.SET_NULL, null=True, blank=True)
    lat = models.FloatField()
    lon = models.FloatField()
    eta = models.TimeField()  # arrival
    service_start = models.TimeField()
    departure = models.TimeField()
    load_on_arrival = models.JSONField(default=dict)  # {"kg": 120, "m3": 1.32}

    class Meta:
        ordering = ["route", "order"]
        constraints = [
            models.UniqueConstraint(fields=["route", "order"], name="routing_visit_order_unique")
        ]

    def __str__(self) -> str:
        return f"{self.order}. {self.code}"


class MatrixCache(models.Model):
    """A travel matrix from a provider, keyed by its (rounded) coordinates."""

    key = models.CharField(max_length=64, unique=True)  # sha256 of provider + coordinates
    provider = models.CharField(max_length=32)
    size = models.PositiveIntegerField()
    distances = models.JSONField()
    durations = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.provider} matrix {self.size}x{self.size}"

"""What POST /api/v1/queue/route-optimization accepts: a day + depot, or an inline problem.

Strict (queueing.Contract): an unknown field, a wrong JSON type or a dangling reference
is a 400 naming the field, and nothing is written. Validated values reach the job as
JSON (times "HH:MM:SS", decimals as strings), which `routing.snapshot` normalises.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from queueing import Contract

# Limits of one request; bigger days are split by depot. The solver's time grows with
# the stops; 2,000 stops and 100 vehicles are far beyond a depot's day.
MAX_STOPS = 2000
MAX_VEHICLES = 100
MAX_TIME_LIMIT = 30.0  # seconds: issue 13's budget is "under 30 s" per optimisation
DEFAULT_TIME_LIMIT = 10.0

MINUTES_PER_DAY = 24 * 60


class DepotIn(Contract):
    id = serializers.CharField(max_length=32)
    lat = serializers.FloatField(min_value=-90, max_value=90)
    lon = serializers.FloatField(min_value=-180, max_value=180)


class FacilityIn(Contract):
    id = serializers.CharField(max_length=32)
    lat = serializers.FloatField(min_value=-90, max_value=90)
    lon = serializers.FloatField(min_value=-180, max_value=180)
    unload_minutes = serializers.IntegerField(min_value=0, max_value=240, default=15)
    opens = serializers.TimeField(required=False)
    closes = serializers.TimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "opens" in attrs and "closes" in attrs and attrs["opens"] >= attrs["closes"]:
            raise serializers.ValidationError({"closes": ["must be after opens"]})
        return attrs


class StopIn(Contract):
    id = serializers.CharField(max_length=32)
    lat = serializers.FloatField(min_value=-90, max_value=90)
    lon = serializers.FloatField(min_value=-180, max_value=180)
    demand = serializers.ListField(child=serializers.IntegerField(min_value=0), min_length=1)
    service_minutes = serializers.IntegerField(min_value=0, max_value=240, default=2)
    window = serializers.ListField(
        child=serializers.TimeField(), min_length=2, max_length=2, required=False
    )
    # A field named like Field.required: DRF's metaclass takes it as the stop's field.
    required = serializers.BooleanField(default=True)  # type: ignore[assignment]
    prize = serializers.DecimalField(
        max_digits=8, decimal_places=2, min_value=0, default=Decimal(0)
    )

    def validate_window(self, value: list[Any]) -> list[Any]:
        if value[0] >= value[1]:
            raise serializers.ValidationError("the window must open before it closes")
        return value


class VehicleIn(Contract):
    id = serializers.CharField(max_length=32)
    depot = serializers.CharField(max_length=32)
    end_depot = serializers.CharField(max_length=32, required=False)
    capacity = serializers.ListField(child=serializers.IntegerField(min_value=0), min_length=1)
    shift_start = serializers.TimeField()
    shift_end = serializers.TimeField()
    max_route_minutes = serializers.IntegerField(
        min_value=1, max_value=MINUTES_PER_DAY, required=False
    )
    cost_per_km = serializers.DecimalField(
        max_digits=8, decimal_places=2, min_value=0, default=Decimal(1)
    )
    cost_per_hour = serializers.DecimalField(
        max_digits=8, decimal_places=2, min_value=0, default=Decimal(0)
    )
    reload_facilities = serializers.ListField(
        child=serializers.CharField(max_length=32), default=list
    )
    max_reloads = serializers.IntegerField(min_value=0, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["shift_start"] >= attrs["shift_end"]:
            raise serializers.ValidationError({"shift_end": ["must be after shift_start"]})
        return attrs


class ProblemIn(Contract):
    dimensions = serializers.ListField(
        child=serializers.CharField(max_length=16),
        min_length=1,
        max_length=4,
        default=lambda: ["kg"],
    )
    depots = DepotIn(many=True, min_length=1)  # type: ignore[call-arg]
    facilities = FacilityIn(many=True, required=False, default=list)
    stops = StopIn(many=True, min_length=1, max_length=MAX_STOPS)  # type: ignore[call-arg]
    vehicles = VehicleIn(many=True, min_length=1, max_length=MAX_VEHICLES)  # type: ignore[call-arg]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        dims = len(attrs["dimensions"])
        for kind in ("depots", "facilities", "stops", "vehicles"):
            ids = [item["id"] for item in attrs[kind]]
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                errors.setdefault(kind, []).append(f"duplicate ids: {', '.join(twice)}")
        # Depots, facilities and stops are places on one map and in one set of matrices:
        # an id names one place (vehicles are not places and have their own ids).
        seen: dict[str, str] = {}
        for kind, singular in (("depots", "depot"), ("facilities", "facility"), ("stops", "stop")):
            place_ids = {item["id"] for item in attrs[kind]}
            clash = sorted(i for i in place_ids if seen.get(i, singular) != singular)
            if clash:
                errors.setdefault(kind, []).append(
                    "ids already used by another kind of place: "
                    + ", ".join(f"{i} ({seen[i]})" for i in clash)
                )
            seen.update({i: singular for i in place_ids if i not in seen})
        depots = {d["id"] for d in attrs["depots"]}
        facilities = {f["id"] for f in attrs["facilities"]}
        wrong_dims = [s["id"] for s in attrs["stops"] if len(s["demand"]) != dims]
        if wrong_dims:
            errors.setdefault("stops", []).append(
                f"demand needs {dims} amounts (one per dimension): {', '.join(wrong_dims[:10])}"
            )
        for v in attrs["vehicles"]:
            if len(v["capacity"]) != dims:
                errors.setdefault("vehicles", []).append(
                    f"{v['id']}: capacity needs {dims} amounts"
                )
            for ref in (v["depot"], v.get("end_depot", v["depot"])):
                if ref not in depots:
                    errors.setdefault("vehicles", []).append(f"{v['id']}: unknown depot {ref!r}")
            unknown = sorted(set(v["reload_facilities"]) - facilities)
            if unknown:
                errors.setdefault("vehicles", []).append(
                    f"{v['id']}: unknown facilities {', '.join(unknown)}"
                )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RouteOptimizationArgs(Contract):
    """Either `day` + `depot` (plan that depot's service points due that weekday with its
    vehicles), or `problem` (everything inline). Plus the solver's time limit and seed."""

    day = serializers.DateField(required=False)
    depot = serializers.CharField(max_length=32, required=False)
    problem = ProblemIn(required=False)
    time_limit = serializers.FloatField(
        min_value=0.1, max_value=MAX_TIME_LIMIT, default=DEFAULT_TIME_LIMIT
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    matrix = serializers.ChoiceField(choices=["offline", "osrm"], default="offline")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        by_day = "day" in attrs or "depot" in attrs
        if by_day == ("problem" in attrs):
            raise serializers.ValidationError(
                {"non_field_errors": ["give either day and depot, or problem (not both)"]}
            )
        if by_day:
            missing = [name for name in ("day", "depot") if name not in attrs]
            if missing:
                raise serializers.ValidationError(
                    {name: ["required with day/depot"] for name in missing}
                )
            from routing.models import Depot

            if not Depot.objects.filter(code=attrs["depot"]).exists():
                raise serializers.ValidationError({"depot": [f"no depot {attrs['depot']!r}"]})
        return attrs

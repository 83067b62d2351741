"""Admin pages: places and fleet (editable), runs and routes (read-only) with the SVG
map of a run and a printable run sheet per route (driver)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from rest_framework.exceptions import ValidationError

from queueing import audit_enqueued, confirm_action, may_enqueue
from routing import services
from routing.models import (
    Depot,
    Facility,
    OptimizationRun,
    Route,
    RouteVisit,
    ServicePoint,
    Vehicle,
)
from routing.svg import colour, run_map

# A plan asked for in the admin gets the nightly plan's solver time.
ADMIN_PLAN_SECONDS = 20.0


def may_plan(user: Any) -> bool:
    """May ask for an optimisation: whoever may enqueue routing.optimize_routes over the
    API (admin, manager, dispatcher, or enqueue_any)."""
    from routing.tasks import optimize_routes

    return may_enqueue(user, optimize_routes)


def enqueue_audited(request: HttpRequest, arguments: dict[str, Any], why: str) -> str | None:
    """Enqueue one optimisation (the API's path) with its audit event, in one
    transaction; None when done, else why the arguments were refused."""
    try:
        with transaction.atomic():
            job = services.request_optimisation(arguments, request.user)
            audit_enqueued(request, job, why)
    except ValidationError as exc:
        return "; ".join(
            f"{field}: {' '.join(map(str, errors))}"
            for field, errors in (exc.detail.items() if isinstance(exc.detail, dict) else [])
        ) or str(exc.detail)
    return None


class PlanDayForm(forms.Form):
    day = forms.DateField(help_text="YYYY-MM-DD: the service points due that weekday")


@admin.register(Depot)
class DepotAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "address", "lat", "lon", "is_demo")
    search_fields = ("code", "name", "address")
    actions = ["plan_day"]

    def has_plan_permission(self, request: HttpRequest) -> bool:
        return may_plan(request.user)

    @admin.action(description="Plan a day for the selected depots", permissions=["plan"])
    def plan_day(self, request: HttpRequest, queryset: QuerySet[Depot]) -> HttpResponse | None:
        """GET-like first POST: a page asking for the day (tomorrow by default); the
        confirmed POST enqueues one optimisation per depot, each audited."""
        tomorrow = services.business_today() + dt.timedelta(days=1)
        confirming = request.POST.get("confirm") == "yes"
        form = PlanDayForm(request.POST if confirming else None, initial={"day": tomorrow})
        if not confirming or not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Plan a day for the selected depots",
                "form": form,
                "depots": list(queryset),
                "ids": [str(pk) for pk in queryset.values_list("pk", flat=True)],
                "seconds": ADMIN_PLAN_SECONDS,
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "routing/plan_day.html", context)
        day: dt.date = form.cleaned_data["day"]
        asked: list[str] = []
        refused: list[str] = []
        for depot in queryset.order_by("code"):
            arguments = {"day": day.isoformat(), "depot": depot.code}
            problem = enqueue_audited(
                request,
                {**arguments, "time_limit": ADMIN_PLAN_SECONDS},
                f"via admin: plan {day.isoformat()} for depot {depot.code}",
            )
            if problem:
                refused.append(f"{depot.code}: {problem}")
            else:
                asked.append(depot.code)
        if asked:
            self.message_user(
                request,
                f"Optimisation of {day.isoformat()} queued for {', '.join(asked)} "
                "(Routing -> Optimization runs shows the plans).",
                messages.SUCCESS,
            )
        if refused:
            self.message_user(request, f"Not queued: {'; '.join(refused)}", messages.ERROR)
        return None


@admin.register(Facility)
class FacilityAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "unload_minutes", "opens", "closes", "is_demo")
    list_filter = ("kind",)
    search_fields = ("code", "name")


@admin.register(Vehicle)
class VehicleAdmin(admin.ModelAdmin):
    list_display = (
        "code", "name", "depot", "driver_name", "capacity_kg", "capacity_m3",
        "shift_start", "shift_end", "active",
    )  # fmt: skip
    list_filter = ("depot", "active")
    list_select_related = ("depot",)
    search_fields = ("code", "name", "driver_name")
    filter_horizontal = ("reload_facilities",)


@admin.register(ServicePoint)
class ServicePointAdmin(admin.ModelAdmin):
    list_display = (
        "code", "customer_name", "address", "depot", "pickup_weekday", "container",
        "demand_kg", "window_start", "window_end", "required", "active",
    )  # fmt: skip
    list_filter = ("depot", "pickup_weekday", "required", "active", "container")
    list_select_related = ("depot",)
    search_fields = ("code", "customer_name", "customer_ref", "address")
    raw_id_fields = ("depot",)


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0
    can_delete = False
    fields = ("colour_swatch", "number", "vehicle_code", "start", "end", "stops", "reloads",
              "distance_km", "sheet")  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="")
    def colour_swatch(self, route: Route) -> SafeString:
        return format_html(
            '<span style="display:inline-block;width:14px;height:14px;background:{}"></span>',
            colour(route.number),
        )

    @admin.display(description="km")
    def distance_km(self, route: Route) -> str:
        return f"{route.distance_m / 1000:.1f}"

    @admin.display(description="run sheet")
    def sheet(self, route: Route) -> SafeString:
        url = reverse("admin:routing_run_sheet", args=[route.run_id, route.number])
        return format_html('<a href="{}">print</a>', url)


@admin.register(OptimizationRun)
class OptimizationRunAdmin(admin.ModelAdmin):
    list_display = (
        "id", "created_at", "day", "depot", "status", "progress", "cost", "distance_km",
        "improvement_pct", "cache_hit", "route_count",
    )  # fmt: skip
    list_filter = ("status", "depot", "day")
    list_select_related = ("depot",)
    date_hierarchy = "created_at"
    inlines = [RouteInline]
    readonly_fields = (
        "map", "job_id", "day", "depot", "status", "progress", "objective", "cost", "distance_m",
        "duration_s", "improvement_pct", "baseline", "dropped", "error", "parameters", "stats",
        "cached_from", "input_hash", "created_at", "finished_at", "input_snapshot",
    )  # fmt: skip
    exclude = ("is_demo",)
    actions = ["run_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_plan_permission(self, request: HttpRequest) -> bool:
        return may_plan(request.user)

    @admin.action(description="Run again (a new optimisation, same request)", permissions=["plan"])
    def run_again(
        self, request: HttpRequest, queryset: QuerySet[OptimizationRun]
    ) -> HttpResponse | None:
        """Confirmed, then one new job per run with the run's own request (a day is read
        from the tables again; an unchanged input within the hour comes from the cache)."""
        page = confirm_action(
            self,
            request,
            queryset,
            "run_again",
            "plan these runs again (new optimisation jobs with the same request)",
        )
        if page:
            return page
        asked: list[str] = []
        refused: list[str] = []
        for run in queryset.select_related("depot"):
            arguments = services.arguments_of(run)
            if arguments is None:
                problem: str | None = "its inline problem is no longer stored"
            else:
                why = f"via admin: run again of routing run {run.pk}"
                problem = enqueue_audited(request, arguments, why)
            if problem:
                refused.append(f"run {run.pk}: {problem}")
            else:
                asked.append(f"run {run.pk}")
        if asked:
            self.message_user(
                request, f"{len(asked)} optimisation(s) queued again.", messages.SUCCESS
            )
        if refused:
            self.message_user(request, f"Not queued: {'; '.join(refused)}", messages.ERROR)
        return None

    def get_queryset(self, request: HttpRequest) -> QuerySet[OptimizationRun]:
        return super().get_queryset(request).defer("input_snapshot")

    @admin.display(description="km")
    def distance_km(self, run: OptimizationRun) -> str:
        return "" if run.distance_m is None else f"{run.distance_m / 1000:.1f}"

    @admin.display(description="cached", boolean=True)
    def cache_hit(self, run: OptimizationRun) -> bool:
        return run.cached_from_id is not None

    @admin.display(description="routes")
    def route_count(self, run: OptimizationRun) -> int:
        return run.routes.count()

    @admin.display(description="map")
    def map(self, run: OptimizationRun) -> SafeString:
        # run_map escapes every text it writes; the rest is our own markup.
        return mark_safe(run_map(run))  # noqa: S308

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:run_id>/sheet/<int:number>/",
                self.admin_site.admin_view(self.run_sheet),
                name="routing_run_sheet",
            )
        ]
        return own + super().get_urls()

    def run_sheet(self, request: HttpRequest, run_id: int, number: int) -> HttpResponse:
        """The printable sheet a driver takes along: stops in order with ETAs and loads."""
        run = get_object_or_404(OptimizationRun, pk=run_id)
        route = get_object_or_404(Route.objects.select_related("vehicle"), run=run, number=number)
        if not self.has_view_permission(request, run):
            return HttpResponse(status=403)
        vehicle_rows = {v["id"]: v for v in (run.input_snapshot or {}).get("vehicles", [])}
        snapshot_vehicle = vehicle_rows.get(route.vehicle_code, {})
        rows = [
            {
                "visit": v,
                "point": v.service_point,
                "load": ", ".join(f"{val} {k}" for k, val in v.load_on_arrival.items()),
            }
            for v in route.visits.select_related("service_point", "facility")
        ]
        hours, minutes = divmod(route.duration_s // 60, 60)
        context = {
            **self.admin_site.each_context(request),
            "run": run,
            "route": route,
            "vehicle": route.vehicle,
            "colour": colour(route.number),
            "rows": rows,
            "start_depot": snapshot_vehicle.get("start", ""),
            "end_depot": snapshot_vehicle.get("end", ""),
            "distance_km": f"{route.distance_m / 1000:.1f}",
            "duration": f"{hours} h {minutes:02d} min",
            "back_url": reverse("admin:routing_optimizationrun_change", args=[run.pk]),
        }
        return TemplateResponse(request, "routing/run_sheet.html", context)


class RouteVisitInline(admin.TabularInline):
    model = RouteVisit
    extra = 0
    can_delete = False
    fields = ("order", "kind", "code", "eta", "service_start", "departure", "load_on_arrival")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ("run", "number", "vehicle_code", "start", "end", "stops", "reloads", "sheet")
    list_select_related = ("run",)
    list_filter = ("run__day",)
    search_fields = ("vehicle_code",)
    raw_id_fields = ("run", "vehicle")
    inlines = [RouteVisitInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="run sheet")
    def sheet(self, route: Route) -> SafeString:
        url = reverse("admin:routing_run_sheet", args=[route.run_id, route.number])
        return format_html('<a href="{}">print</a>', url)

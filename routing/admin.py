"""Admin pages: places and fleet (editable), runs and routes (read-only) with the SVG
map of a run and a printable run sheet per route (driver)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

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


@admin.register(Depot)
class DepotAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "address", "lat", "lon", "is_demo")
    search_fields = ("code", "name", "address")


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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

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

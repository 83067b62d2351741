"""Route optimisation's endpoints, mounted under /api/v1/queue/ by the platform.

POST route-optimization                      enqueue (202 + Location of the job)
GET  route-optimization/jobs/<job id>        the run of a job: status, progress, plan
GET  route-optimization/runs/<run id>        the same, by run
Roles: admin, manager, dispatcher (the job's declared roles; reads the same).
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing import JobEndpoint
from routing.models import OptimizationRun, RunStatus
from routing.services import run_summary

ROLES = ("admin", "manager", "dispatcher")


class IsRoutingRole(BasePermission):
    message = "your role may not read route optimisations"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser or user.groups.filter(name__in=ROLES).exists())


def run_detail(run: OptimizationRun) -> dict[str, Any]:
    body = run_summary(run)
    body["job_id"] = str(run.job_id) if run.job_id else None
    body["day"] = run.day.isoformat() if run.day else None
    body["parameters"] = run.parameters
    body["baseline"] = run.baseline
    body["stats"] = run.stats
    body["admin_url"] = reverse("admin:routing_optimizationrun_change", args=[run.pk])
    if run.status == RunStatus.SUCCEEDED:
        body["routes"] = [
            {
                "number": r.number,
                "vehicle": r.vehicle_code,
                "start": r.start.isoformat(),
                "end": r.end.isoformat(),
                "distance_km": round(r.distance_m / 1000, 2),
                "duration_min": round(r.duration_s / 60),
                "reloads": r.reloads,
                "visits": [
                    {
                        "order": v.order,
                        "kind": v.kind,
                        "code": v.code,
                        "eta": v.eta.isoformat(),
                        "departure": v.departure.isoformat(),
                        "load_on_arrival": v.load_on_arrival,
                    }
                    for v in r.visits.all()
                ],
            }
            for r in run.routes.prefetch_related("visits")
        ]
    return body


class RunByJobView(APIView):
    permission_classes = [IsRoutingRole]

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="The run of a job")
    def get(self, request: Request, job_id: str) -> Response:
        run = OptimizationRun.objects.filter(job_id=job_id).first()
        if run is None:
            # Accepted but not started yet (or no such job): the job's URL says which.
            location = reverse("queue-api:job-detail", args=[job_id])
            raise NotFound(f"no run for this job yet; the job's status is at {location}")
        return Response(run_detail(run))


class RunView(APIView):
    permission_classes = [IsRoutingRole]

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="A route-optimisation run")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(run_detail(get_object_or_404(OptimizationRun, pk=run_id)))


urlpatterns = [
    path(
        "route-optimization",
        JobEndpoint.as_view(task="routing.optimize_routes"),
        name="route-optimization",
    ),
    path(
        "route-optimization/jobs/<uuid:job_id>",
        RunByJobView.as_view(),
        name="route-optimization-job",
    ),
    path("route-optimization/runs/<int:run_id>", RunView.as_view(), name="route-optimization-run"),
]

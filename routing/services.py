"""Route optimisation as plain functions: snapshot, cache, solve, store (no Celery here).

`optimize` is what the job runs. One run row per job (keyed by the job id), so a job
that runs again after its worker died reuses its run instead of adding a second one; the
plan is written in one transaction guarded by the job's lease (`guard`), so a worker
that lost its lease cannot write over the attempt that replaced it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from routing import snapshot as snap
from routing.models import (
    Depot,
    Facility,
    OptimizationRun,
    Route,
    RouteVisit,
    RunStatus,
    ServicePoint,
    Vehicle,
    VisitKind,
)
from routing.solver import COST_UNIT, InfeasibleProblem, Plan, Problem, solve
from routing.solver.baseline import Baseline, choose_baseline

logger = logging.getLogger(__name__)

# The result cache: the same input snapshot and parameters within this window return
# the stored plan without solving (issue 13: "cached for an hour").
RESULT_CACHE_SECONDS = 3600
# The matrix source recorded when "osrm" is asked for without a configured provider.
OSRM_NOT_SET = "offline (osrm asked for, OSRM_URL not set)"


class OptimizationFailed(Exception):
    """The run cannot produce a plan (impossible instance, no stops); recorded on the run."""


class OptimizationCancelled(Exception):
    """An operator cancelled the job mid-solve; the run is recorded as cancelled."""


def parameters_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "time_limit": float(kwargs.get("time_limit", 10.0)),
        "seed": int(kwargs.get("seed", 0)),
        "matrix": kwargs.get("matrix", "offline"),
    }


def build_snapshot(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("problem"):
        return snap.from_inline(kwargs["problem"])
    try:
        return snap.from_tables(dt.date.fromisoformat(kwargs["day"]), kwargs["depot"])
    except Depot.DoesNotExist:
        raise OptimizationFailed(
            f"no depot {kwargs['depot']!r} (deleted since the request?)"
        ) from None


def optimize(
    job_id: str | None,
    kwargs: dict[str, Any],
    progress: Callable[[float], Any] | None = None,
    guard: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> OptimizationRun:
    """Plan the routes `kwargs` describe (the job's contract) and store them on a run.

    `guard` raises when this attempt no longer holds the job (every write to the run
    after the claim is made under it); `should_stop` ends the search early; `cancelled`
    says whether that was an operator's cancel.

    Returns the finished run (succeeded, or served from the result cache). Raises
    OptimizationFailed, after marking the run failed, when no plan can exist, and
    OptimizationCancelled, after marking the run cancelled, when `cancelled()` is true
    once the search has stopped.
    """
    snapshot = build_snapshot(kwargs)
    parameters = parameters_of(kwargs)
    digest = snap.input_hash(snapshot, parameters)
    run = _claim_run(job_id, kwargs, snapshot, parameters, digest)
    if run.status == RunStatus.SUCCEEDED:
        return run  # this job already finished it (a redelivery)
    source = cached_run(digest, exclude=run.pk)
    if source is not None:
        return _copy_plan(run, source, guard)
    if not snapshot["stops"]:
        return _fail(run, "no service points to plan (none due that day at that depot)", [], guard)
    plan: Plan | None = None
    try:
        matrix, matrix_source = _provider_matrix(snapshot, parameters)
        if matrix_source == OSRM_NOT_SET:
            logger.warning("routing run %s (job %s): %s", run.pk, run.job_id, OSRM_NOT_SET)
        problem = snap.to_problem(snapshot, matrix)
        base = compare_with(problem, snapshot["current"])

        def report(fraction: float, cost: int | None) -> bool:
            percent = round(100 * fraction, 1)
            with transaction.atomic():
                if guard is not None:
                    guard()  # a worker that lost the job stops here, writing nothing
                OptimizationRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                    progress=percent
                )
            if progress is not None:
                progress(percent)
            return not (should_stop and should_stop())

        plan = solve(problem, parameters["time_limit"], parameters["seed"], progress=report)
    except InfeasibleProblem as exc:
        if cancelled is not None and cancelled():
            return _cancel(run, None, guard)
        return _fail(run, str(exc), dropped_stops(exc), guard)
    if cancelled is not None and cancelled():
        return _cancel(run, plan, guard)
    plan.stats["matrix"] = matrix_source
    return _store_plan(run, snapshot, plan, base.__dict__, base.improvement(plan.cost), guard)


def dropped_stops(exc: InfeasibleProblem) -> list[dict[str, str]]:
    """Each stop an impossible instance names, with the constraint(s) it breaks."""
    reasons: dict[str, list[str]] = {}
    for violation in exc.violations:
        for stop in violation.stop_ids:
            constraints = reasons.setdefault(stop, [])
            if violation.constraint not in constraints:
                constraints.append(violation.constraint)
    return [{"stop": stop, "reason": ", ".join(c)} for stop, c in reasons.items()]


def compare_with(problem: Problem, current: dict[str, list[str]]) -> Baseline:
    """The baseline: today's rounds when they serve every stop feasibly, else nearest
    neighbour (an infeasible current order would flatter the plan); it records why the
    current order was not used."""
    return choose_baseline(problem, current)


def cached_run(digest: str, exclude: int | None = None) -> OptimizationRun | None:
    """A succeeded run of the same input within the cache window (its own solve, not a copy)."""
    fresh = timezone.now() - dt.timedelta(seconds=RESULT_CACHE_SECONDS)
    runs = OptimizationRun.objects.filter(
        input_hash=digest,
        status=RunStatus.SUCCEEDED,
        finished_at__gte=fresh,
        cached_from__isnull=True,
    )
    if exclude is not None:
        runs = runs.exclude(pk=exclude)
    return runs.order_by("-finished_at").first()


def _claim_run(
    job_id: str | None,
    kwargs: dict[str, Any],
    snapshot: dict[str, Any],
    parameters: dict[str, Any],
    digest: str,
) -> OptimizationRun:
    depot = Depot.objects.filter(code=kwargs.get("depot")).first() if kwargs.get("depot") else None
    fields = {
        "day": kwargs.get("day"),
        "depot": depot,
        "input_snapshot": snapshot,
        "input_hash": digest,
        "parameters": parameters,
        "stats": {"worker_pid": os.getpid()},
    }
    if job_id is None:
        return OptimizationRun.objects.create(**fields)
    run, created = OptimizationRun.objects.get_or_create(job_id=job_id, defaults=fields)
    if not created and run.status != RunStatus.SUCCEEDED:
        logger.info("routing run %s: job %s runs again, reusing its run", run.pk, job_id)
        OptimizationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.RUNNING, progress=0, error="", **fields
        )
        run.refresh_from_db()
    return run


def _fail(
    run: OptimizationRun,
    error: str,
    dropped: list[dict[str, str]],
    guard: Callable[[], None] | None,
) -> OptimizationRun:
    with transaction.atomic():
        if guard is not None:
            guard()  # a worker that lost the job must not fail the attempt that took it over
        OptimizationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=error, dropped=dropped, finished_at=timezone.now()
        )
    logger.warning("routing run %s (job %s) failed: %s", run.pk, run.job_id, error)
    raise OptimizationFailed(error)


def _cancel(
    run: OptimizationRun, plan: Plan | None, guard: Callable[[], None] | None
) -> OptimizationRun:
    """Record an operator's cancel: no routes; the best plan found so far, if any, only
    as figures in the stats (it is not the day's plan)."""
    best = None
    if plan is not None:
        best = {
            "cost": str((Decimal(plan.cost) / COST_UNIT).quantize(Decimal("0.01"))),
            "distance_m": plan.distance,
            "duration_s": plan.duration,
            "routes": len(plan.routes),
            **plan.stats,
        }
    with transaction.atomic():
        if guard is not None:
            guard()
        Route.objects.filter(run=run).delete()
        OptimizationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.CANCELLED,
            error="cancelled by an operator while solving",
            stats={**run.stats, "best_when_cancelled": best},
            finished_at=timezone.now(),
        )
    logger.info("routing run %s (job %s): cancelled while solving", run.pk, run.job_id)
    raise OptimizationCancelled(f"run {run.pk} cancelled")


def _time(seconds: int) -> dt.time:
    seconds = max(0, min(seconds, 24 * 3600 - 1))
    return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _load(values: tuple[int, ...], dims: list[str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name, value in zip(dims, values, strict=True):
        if name == "litres":
            out["m3"] = round(value / snap.LITRES_PER_M3, 3)
        else:
            out[name] = value
    return out


def _store_plan(
    run: OptimizationRun,
    snapshot: dict[str, Any],
    plan: Plan,
    base: dict[str, Any],
    improvement: float,
    guard: Callable[[], None] | None,
) -> OptimizationRun:
    # Keyed by kind: a stop and a facility of an inline problem may share an id.
    coords = {
        (kind, item["id"]): (item["lat"], item["lon"])
        for kind, places in (("reload", "facilities"), ("stop", "stops"))
        for item in snapshot[places]
    }
    dims = snapshot["dimensions"]
    points = {
        p.code: p
        for p in ServicePoint.objects.filter(code__in=[s["id"] for s in snapshot["stops"]])
    }
    facilities = {
        f.code: f
        for f in Facility.objects.filter(code__in=[f["id"] for f in snapshot["facilities"]])
    }
    vehicles = {
        v.code: v for v in Vehicle.objects.filter(code__in=[r.vehicle_id for r in plan.routes])
    }
    with transaction.atomic():
        if guard is not None:
            guard()  # still ours? (LeaseLost otherwise: nothing is written)
        Route.objects.filter(run=run).delete()
        for number, r in enumerate(plan.routes, 1):
            route = Route.objects.create(
                run=run,
                vehicle=vehicles.get(r.vehicle_id),
                vehicle_code=r.vehicle_id,
                number=number,
                start=_time(r.start),
                end=_time(r.end),
                distance_m=r.distance,
                duration_s=r.duration,
                stops=len(r.stop_ids),
                reloads=r.reloads,
            )
            RouteVisit.objects.bulk_create(
                RouteVisit(
                    route=route,
                    order=order,
                    kind=VisitKind.STOP if v.kind == "stop" else VisitKind.RELOAD,
                    code=v.id,
                    service_point=points.get(v.id) if v.kind == "stop" else None,
                    facility=facilities.get(v.id) if v.kind == "reload" else None,
                    lat=coords[v.kind, v.id][0],
                    lon=coords[v.kind, v.id][1],
                    eta=_time(v.arrival),
                    service_start=_time(v.start),
                    departure=_time(v.departure),
                    load_on_arrival=_load(v.load_on_arrival, dims),
                )
                for order, v in enumerate(r.visits, 1)
            )
        OptimizationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED,
            progress=100,
            objective=plan.cost,
            cost=(Decimal(plan.cost) / COST_UNIT).quantize(Decimal("0.01")),
            distance_m=plan.distance,
            duration_s=plan.duration,
            baseline=base,
            improvement_pct=Decimal(str(round(improvement, 2))),
            stats={**run.stats, **plan.stats, "cache_hit": False},
            dropped=[
                {"stop": s, "reason": "optional: cheaper to skip (prize)"} for s in plan.dropped
            ],
            finished_at=timezone.now(),
        )
    run.refresh_from_db()
    logger.info(
        "routing run %s (job %s): %s routes, cost %s",
        run.pk,
        run.job_id,
        len(plan.routes),
        run.cost,
    )
    return run


def _copy_plan(
    run: OptimizationRun, source: OptimizationRun, guard: Callable[[], None] | None
) -> OptimizationRun:
    """Serve `run` from the result cache: the source's plan, copied, without solving."""
    with transaction.atomic():
        if guard is not None:
            guard()
        Route.objects.filter(run=run).delete()
        for old in source.routes.prefetch_related("visits"):
            visits = list(old.visits.all())
            old.pk = None
            old.run = run
            old.save()
            for v in visits:
                v.pk = None
                v.route = old
            RouteVisit.objects.bulk_create(visits)
        OptimizationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED,
            progress=100,
            objective=source.objective,
            cost=source.cost,
            distance_m=source.distance_m,
            duration_s=source.duration_s,
            baseline=source.baseline,
            improvement_pct=source.improvement_pct,
            stats={**source.stats, "cache_hit": True, "worker_pid": os.getpid()},
            dropped=source.dropped,
            cached_from=source,
            finished_at=timezone.now(),
        )
    run.refresh_from_db()
    logger.info(
        "routing run %s (job %s): served from the cache of run %s", run.pk, run.job_id, source.pk
    )
    return run


def _provider_matrix(snapshot: dict[str, Any], parameters: dict[str, Any]) -> tuple[Any, str]:
    """The provider's (distance, duration) matrices, or None for the offline estimate;
    and which source was used (stored in the run's stats)."""
    from django.conf import settings

    if parameters["matrix"] != "osrm":
        return None, "offline"
    if "osrm" not in settings.TASKYARD_PROVIDERS:
        # OSRM_URL is not set (production without a matrix service): offline, and say so.
        return None, OSRM_NOT_SET
    from routing.osrm import osrm_matrix

    return osrm_matrix(snap.points_of(snapshot)), "osrm"


def run_summary(run: OptimizationRun) -> dict[str, Any]:
    """What the API and the job's result say about a run."""
    return {
        "run_id": run.pk,
        "status": run.status,
        "progress": run.progress,
        "cost": str(run.cost) if run.cost is not None else None,
        "distance_km": round(run.distance_m / 1000, 2) if run.distance_m is not None else None,
        "duration_h": round(run.duration_s / 3600, 2) if run.duration_s is not None else None,
        "improvement_pct": str(run.improvement_pct) if run.improvement_pct is not None else None,
        "cache_hit": bool(run.cached_from_id),
        "dropped": run.dropped,
        # Windows, shifts or durations the plan breaks once timed by departure hour.
        "traffic_warnings": (run.stats or {}).get("traffic_warnings", []),
        "error": run.error,
    }


def business_today() -> dt.date:
    """Today in the business's time zone (settings.BUSINESS_TIME_ZONE)."""
    from zoneinfo import ZoneInfo

    from django.conf import settings

    zone = getattr(settings, "BUSINESS_TIME_ZONE", None) or settings.TIME_ZONE
    return timezone.now().astimezone(ZoneInfo(str(zone))).date()


def request_optimisation(arguments: dict[str, Any], user: Any) -> Any:
    """Enqueue `routing.optimize_routes` as the API does, for `user`: the arguments checked
    by the job's contract (rest_framework ValidationError otherwise, nothing written),
    the job inserted in the caller's transaction. Returns the Job."""
    from queueing import enqueue, validate_arguments
    from routing.tasks import optimize_routes

    kwargs = validate_arguments(optimize_routes, arguments, field=None)
    return enqueue(optimize_routes, (), kwargs, user=user)


def arguments_of(run: OptimizationRun) -> dict[str, Any] | None:
    """What to ask to plan `run` again: its job's arguments, else its day, depot and
    parameters; None for an inline problem whose job is gone."""
    from queueing import Job

    if run.job_id is not None:
        kwargs = Job.objects.filter(id=run.job_id).values_list("kwargs", flat=True).first()
        if kwargs:
            return {k: v for k, v in kwargs.items() if v is not None}
    if run.day is not None and run.depot is not None:
        return {"day": run.day.isoformat(), "depot": run.depot.code, **run.parameters}
    return None


def enqueue_day(day: dt.date, time_limit: float) -> list[str]:
    """One optimisation job per depot with pickups that day; the depots' codes."""
    from routing.tasks import optimize_routes

    depots = (
        Depot.objects.filter(
            service_points__active=True, service_points__pickup_weekday=day.weekday()
        )
        .distinct()
        .order_by("code")
    )
    codes = []
    for depot in depots:
        optimize_routes.delay(day=day.isoformat(), depot=depot.code, time_limit=time_limit)
        codes.append(depot.code)
    return codes

"""The route-optimisation job: thin, it calls routing.services.optimize."""

from __future__ import annotations

import datetime as dt
from typing import Any

from queueing import JobCancelled, PermanentError, job
from routing.contracts import DEFAULT_TIME_LIMIT, RouteOptimizationArgs


@job(
    queue="routing",
    name="routing.optimize_routes",
    api=RouteOptimizationArgs,
    roles=("manager", "dispatcher"),
    bind=True,
    # A solve is deterministic: retrying only helps when the worker died or a matrix
    # provider failed, never for an impossible instance (permanent).
    retry={"max_attempts": 3, "base_delay": 5},
)
def optimize_routes(
    self: Any,
    day: str | None = None,
    depot: str | None = None,
    problem: dict[str, Any] | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
    seed: int = 0,
    matrix: str = "offline",
) -> dict[str, Any]:
    """Plan a depot's day (or an inline problem); progress while solving; the run's summary."""
    from routing import services

    kwargs = {
        "day": day,
        "depot": depot,
        "problem": problem,
        "time_limit": time_limit,
        "seed": seed,
        "matrix": matrix,
    }
    try:
        run = services.optimize(
            str(self.job_id) if self.job_id else None,
            kwargs,
            progress=lambda percent: self.progress(percent, "solving"),
            guard=self.assert_lease,
            should_stop=lambda: self.is_cancelled() or self.lease_lost(),
            cancelled=self.is_cancelled,
        )
    except services.OptimizationFailed as exc:
        raise PermanentError(str(exc)) from exc
    except services.OptimizationCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    return services.run_summary(run)


@job(queue="routing", name="routing.plan_tomorrow")
def plan_tomorrow(time_limit: float = 20.0) -> dict[str, Any]:
    """Nightly: enqueue one optimisation per depot for tomorrow's pickups."""
    from routing import services

    day = services.business_today() + dt.timedelta(days=1)
    return {"day": day.isoformat(), "enqueued": services.enqueue_day(day, time_limit)}


@job(queue="maintenance", name="routing.prune", priority=9)
def prune() -> dict[str, Any]:
    """Nightly: expired OSRM matrices deleted, old runs' input snapshots slimmed."""
    from routing import retention

    return retention.prune()

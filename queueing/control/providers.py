"""The provider guard: every call to a third-party service goes through it.

    with provider_call("stripe") as call:
        intent = client.payment_intents.create(...)
        call.cost = 0.3  # optional: this call's own cost, else the declared cost_per_call

Declared once per provider in settings.TASKYARD_PROVIDERS (queueing/specs.py). Around each
call the guard, with state shared by every worker process in Redis:

- **circuit breaker**: closed -> open after ``failures`` provider failures in a row, or a
  failure ratio over a window; open -> half-open after ``open_seconds``, when ``probes``
  calls go through; a probe that succeeds closes it, one that fails opens it again. Only
  provider failures count (5xx, 408, timeouts, connection errors): a 4xx is our request's
  fault and a 429 is the adaptive limit's business.
- **adaptive rate**: a 429 (or a Retry-After) halves the provider's effective rate and
  holds every call until the time the provider asked for; each full period of success
  adds a tenth of the ceiling back, up to the declared ``rate_limit`` (AIMD, as TCP).
- **deferral without an attempt**: a call refused by the breaker, the rate or the
  concurrency limit raises ProviderDeferred; the worker sends the job back to the ledger
  until then (queueing/worker/task.py) without counting an attempt, so an outage or a
  rate-limit storm never dead-letters a job. A job that declares ``providers=`` is held
  before it is even claimed.
- **records**: outcome class, latency and cost per call (Redis counters read by /metrics,
  the admin Providers page and GET /api/v1/queue/providers), cost per day and month.

The maths and the operations guide: docs/providers.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured

from queueing.broker import shared_redis
from queueing.control.breaker import (
    PROBE_TIMEOUT_FACTOR,
    STATE_KEY,
    ProviderDeferred,
    ProviderGuard,
)
from queueing.control.limits import ConcurrencyLimiter
from queueing.counters import observe_provider_call
from queueing.ledger.retry import FailureKind, classify, http_status
from queueing.specs import ProviderSpec, Rate, provider_specs

logger = logging.getLogger(__name__)

# A call refused by the concurrency limit retries after this long (the holders usually
# finish within a call's latency).
CONCURRENCY_WAIT_SECONDS = 1.0


class UnknownProvider(ImproperlyConfigured):
    pass


def spec_for(name: str) -> ProviderSpec:
    try:
        return provider_specs()[name]
    except KeyError:
        raise UnknownProvider(
            f"unknown provider {name!r}; TASKYARD_PROVIDERS declares: "
            f"{', '.join(provider_specs()) or 'none'}"
        ) from None


def _optional_failure_types() -> tuple[type[BaseException], ...]:
    """Network errors of the provider clients we use that are not OSErrors."""
    found: list[type[BaseException]] = []
    for module, name in (
        ("httpx", "TransportError"),
        ("stripe", "APIConnectionError"),
        ("requests", "RequestException"),
    ):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_FAILURE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    socket.timeout,
    *_optional_failure_types(),
)


def outcome_of(exc: BaseException) -> str:
    """The outcome class of a failed call: transient (the provider failed: 5xx, 408,
    timeout, connection), rate_limited, auth, permanent (our request was refused), or
    error (not a provider answer at all: a bug on our side)."""
    kind = classify(exc).kind
    status = http_status(exc)
    if kind is FailureKind.RATE_LIMITED:
        return "rate_limited"
    if kind is FailureKind.AUTH:
        return "auth"
    if kind is FailureKind.PERMANENT:
        return "permanent"
    if status is not None or isinstance(exc, _FAILURE_TYPES):
        return "transient"
    return "error"


@dataclass
class ProviderCall:
    """What the code inside ``provider_call`` may set."""

    provider: str
    probe: bool
    cost: float | None = None  # this call's cost; None: the declared cost_per_call x units
    units: float = 1.0


@contextmanager
def provider_call(
    name: str, *, cost: float | None = None, units: float = 1.0
) -> Iterator[ProviderCall]:
    """Guard one call to provider ``name`` (see the module docstring). Raises
    ProviderDeferred instead of calling, or when the provider answered 429; any other
    exception of the call is recorded and re-raised for the job's retry policy."""
    spec = spec_for(name)
    guard = ProviderGuard(spec)
    admission = guard.admit()
    slot = _take_slot(guard) if spec.concurrency else None
    call = ProviderCall(name, admission.decision == "probe", cost, units)
    started = time.perf_counter()
    try:
        yield call
    except ProviderDeferred:
        raise
    except BaseException as exc:
        latency = time.perf_counter() - started
        outcome = outcome_of(exc)
        _finish(guard, call, outcome, latency, exc)
        if outcome == "rate_limited":
            retry_after = getattr(classify(exc), "retry_after", None)
            wait = (
                retry_after if retry_after else spec.rate_limit.period if spec.rate_limit else 1.0
            )
            raise ProviderDeferred(name, wait, "the provider answered 429") from exc
        raise
    else:
        _finish(guard, call, "ok", time.perf_counter() - started, None)
    finally:
        if slot is not None:
            slot[0].release(slot[1], slot[2])


def _take_slot(guard: ProviderGuard) -> tuple[ConcurrencyLimiter, str, str]:
    limiter = ConcurrencyLimiter(guard.client)
    key = f"provider:{guard.spec.name}"
    holder = uuid.uuid4().hex
    lease = guard.spec.timeout * PROBE_TIMEOUT_FACTOR + 5
    if limiter.acquire(key, guard.spec.concurrency or 1, holder, lease) > 0:
        raise ProviderDeferred(
            guard.spec.name,
            CONCURRENCY_WAIT_SECONDS,
            f"{guard.spec.concurrency} calls already in flight",
        )
    return limiter, key, holder


def _finish(
    guard: ProviderGuard,
    call: ProviderCall,
    outcome: str,
    latency: float,
    exc: BaseException | None,
) -> None:
    """Breaker, adaptive rate and records after a call. Never raises: the call's own
    outcome matters more than its bookkeeping."""
    spec = guard.spec
    try:
        breaker = {"ok": "ok", "transient": "failure"}.get(outcome, "neutral")
        state = guard.record(breaker, probe=call.probe)
        if outcome == "rate_limited":
            retry_after = getattr(classify(exc), "retry_after", None) if exc else None
            limit = guard.adapt(rate_limited=True, retry_after=retry_after)
            period = spec.rate_limit.period if spec.rate_limit else 1.0
            logger.warning(
                "provider %s: 429, effective rate now %s per %.0fs", spec.name, limit, period
            )
        elif outcome == "ok":
            guard.adapt(rate_limited=False)
        if state == "open" and breaker == "failure":
            logger.warning("provider %s: circuit breaker open after %r", spec.name, exc)
        cost = call.cost if call.cost is not None else spec.cost_per_call * call.units
        observe_provider_call(spec.name, outcome, latency, cost if outcome == "ok" else 0.0)
    except redis.RedisError as error:
        logger.warning("provider %s: call not recorded: %r", spec.name, error)


def hold_for_declared(providers: tuple[str, ...]) -> tuple[float, str] | None:
    """Before a job that declares ``providers`` is claimed: (seconds, reason) to hold it
    while one of them is open or cooling down, else None."""
    for name in providers:
        held = ProviderGuard(spec_for(name)).peek()
        if held is not None:
            wait, reason = held
            return wait, f"provider {name}: {reason}"
    return None


def check_health(spec: ProviderSpec) -> dict[str, Any]:
    """One health check of a provider through the guard's records: its health_check
    callable, else an HTTP GET of health_url (or the base URL). Any HTTP answer below 500
    is up (the provider answers; a 401/404 is about our request, not its health). The
    breaker is bypassed, so the check also serves as a probe while it is open."""
    import httpx
    from django.utils.module_loading import import_string

    guard = ProviderGuard(spec)
    started = time.perf_counter()
    error = ""
    try:
        if spec.health_check:
            import_string(spec.health_check)(spec)
        else:
            url = spec.health_url or "/"
            if not url.startswith(("http://", "https://")):
                url = spec.base_url + "/" + url.lstrip("/")
            response = httpx.get(url, timeout=spec.timeout)
            if response.status_code >= 500:
                response.raise_for_status()
        outcome = "ok"
    except Exception as exc:
        outcome, error = outcome_of(exc), repr(exc)[:300]
    latency = time.perf_counter() - started
    healthy = outcome in ("ok", "permanent", "auth")
    # Not a probe: an open breaker still waits its open_seconds; a failing check while
    # closed counts like any failed call.
    guard.record("ok" if healthy else "failure", probe=False)
    observe_provider_call(spec.name, outcome, latency, 0.0, health=True)
    now = dt.datetime.now(dt.UTC).isoformat()
    result = {"ok": healthy, "at": now, "latency_ms": round(latency * 1000, 1), "error": error}
    guard.client.hset(guard.key, mapping={f"health_{k}": str(v) for k, v in result.items()})
    return result


def _ms_to_iso(value: str | None) -> str | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(float(value) / 1000, dt.UTC).isoformat()


def _p95(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def provider_status(spec: ProviderSpec, client: redis.Redis | None = None) -> dict[str, Any]:
    """Everything an operator asks about a provider, read from Redis: breaker state,
    effective rate, last success, error rate and p95 latency over the last calls, cost
    today and this month against the budget, the last health check."""
    from queueing.counters import (
        PROVIDER_DAY_COST_KEY,
        PROVIDER_MONTH_COST_KEY,
        PROVIDER_RECENT_CALLS,
        PROVIDER_RECENT_KEY,
    )

    client = client or shared_redis(text=True)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(STATE_KEY.format(name=spec.name))
    pipe.lrange(PROVIDER_RECENT_KEY.format(provider=spec.name), 0, PROVIDER_RECENT_CALLS - 1)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    pipe.get(PROVIDER_DAY_COST_KEY.format(provider=spec.name, day=day))
    pipe.get(PROVIDER_MONTH_COST_KEY.format(provider=spec.name, month=day[:7]))
    state, recent, day_cost, month_cost = pipe.execute()
    outcomes, latencies = [], []
    for entry in recent:
        _, outcome, latency = entry.split("|")
        outcomes.append(outcome)
        latencies.append(float(latency))
    failures = sum(1 for outcome in outcomes if outcome == "transient")
    breaker = state.get("state", "closed")
    now_ms = time.time() * 1000
    if breaker == "open" and float(state.get("reopen_at", 0)) <= now_ms:
        breaker = "half_open"  # the next call probes
    month = float(month_cost or 0)
    budget = spec.monthly_budget
    return {
        "name": spec.name,
        "base_url": spec.base_url,
        "state": breaker,
        "reopen_at": _ms_to_iso(state.get("reopen_at")) if breaker == "open" else None,
        "opened_count": int(state.get("opened_count", 0)),
        "rate_limit": str(spec.rate_limit) if spec.rate_limit else None,
        "effective_rate": (
            str(Rate(int(state.get("rate_limit", spec.rate_limit.limit)), spec.rate_limit.period))
            if spec.rate_limit
            else None
        ),
        "rate_limited_count": int(state.get("rate_limited_count", 0)),
        "last_success_at": _ms_to_iso(state.get("last_success_at")),
        "recent_calls": len(outcomes),
        "error_rate": round(failures / len(outcomes), 4) if outcomes else None,
        "p95_ms": _p95(latencies),
        "cost_today": round(float(day_cost or 0), 6),
        "cost_month": round(month, 6),
        "cost_unit": spec.cost_unit,
        "monthly_budget": budget,
        "budget_used": round(month / budget, 4) if budget else None,
        "health": {
            key.removeprefix("health_"): value
            for key, value in state.items()
            if key.startswith("health_")
        }
        or None,
    }

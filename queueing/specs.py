"""The TASKYARD_* settings as validated, typed values: queues, rates, throttles.

Settings are plain data (config/settings.py imports no app code); this module parses
them on first use and again whenever a setting is replaced (tests' override_settings),
and QueueingConfig.ready() calls every parser, so a malformed declaration stops every
process at start with a message naming the setting and the field. Celery's
``task_queues`` and the production worker command lines (``manage.py workers --print``)
derive from the queue declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: float  # seconds

    def __str__(self) -> str:
        for unit, seconds in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
            if self.period % seconds == 0:
                count = int(self.period // seconds)
                return f"{self.limit}/{count if count > 1 else ''}{unit}"
        return f"{self.limit}/{self.period}s"


def parse_rate(value: object, where: str) -> Rate:
    """'100/m' → Rate(100, 60), '100/15m' → Rate(100, 900). Anything else:
    ImproperlyConfigured naming ``where``."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{where}: rate {value!r} is not like '100/m' or '100/15m' "
            "(a positive count per s, m or h, or per N of them)"
        )
    multiple = int(match.group(2) or 1)
    if multiple < 1:
        raise ImproperlyConfigured(f"{where}: rate {value!r} has a zero period")
    return Rate(int(match.group(1)), multiple * _PERIODS[match.group(3)])


def parse_rate_limits(raw: dict[str, Any]) -> dict[str, Rate]:
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("TASKYARD_RATE_LIMITS must be a dict of name: 'N/period'")
    return {
        name: parse_rate(value, f"TASKYARD_RATE_LIMITS[{name!r}]") for name, value in raw.items()
    }


POOLS = ("prefork", "threads")
_RETRY_FIELDS = {"max_attempts", "base_delay", "max_delay"}
_RETENTION_FIELDS = {"succeeded", "dead", "cancelled"}
_KNOWN_FIELDS = {
    "concurrency",
    "pool",
    "group",
    "priority",
    "retry",
    "retention",
    "rate_limit",
    "alerts",
}
# Per-queue alert thresholds (queueing/observe/alerts.py): a queue overrides these keys of
# ALERT_THRESHOLDS; None switches that check off for the queue.
_ALERT_FIELDS = {
    "backlog",
    "failure_rate",
    "failure_rate_critical",
    "average_run_seconds",
    "dead_letters",
    "latency_warning_ms",
    "latency_critical_ms",
}


@dataclass(frozen=True)
class QueueSpec:
    name: str
    concurrency: int
    pool: str = "prefork"
    # Queues of one group share a worker process in production (`workers --print`).
    group: str = ""
    priority: int | None = None
    retry: Mapping[str, Any] = field(default_factory=dict)
    # Seconds a finished job is kept, per final status (overrides the global defaults).
    retention: Mapping[str, float] = field(default_factory=dict)
    # Starts per window across the whole cluster (queueing/control/limits.py), e.g. "60/m".
    rate_limit: Rate | None = None
    # ALERT_THRESHOLDS keys this queue overrides; None: that check is off for the queue.
    alerts: Mapping[str, float | None] = field(default_factory=dict)


def _fail(name: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"TASKYARD_QUEUES[{name!r}]: {message}")


def parse_queue(name: str, raw: Mapping[str, Any]) -> QueueSpec:
    if not isinstance(name, str) or not name or not name.replace("-", "").isalnum():
        raise _fail(str(name), "a queue name is letters, digits and dashes")
    if not isinstance(raw, Mapping):
        raise _fail(name, "must be a dict of settings")
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise _fail(name, f"unknown field(s) {sorted(unknown)}; known: {sorted(_KNOWN_FIELDS)}")
    concurrency = raw.get("concurrency")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise _fail(name, f"concurrency must be a positive integer, not {concurrency!r}")
    pool = raw.get("pool", "prefork")
    if pool not in POOLS:
        raise _fail(name, f"pool {pool!r} is not one of {', '.join(POOLS)}")
    priority = raw.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9
    ):
        raise _fail(name, f"priority must be an integer 0-9, not {priority!r}")
    retry = _numbers(name, "retry", raw.get("retry", {}), _RETRY_FIELDS, minimum=0)
    retention = _numbers(name, "retention", raw.get("retention", {}), _RETENTION_FIELDS, 1)
    rate_limit = raw.get("rate_limit")
    if rate_limit is not None:
        rate_limit = parse_rate(rate_limit, f"TASKYARD_QUEUES[{name!r}].rate_limit")
    group = raw.get("group", name)
    if not isinstance(group, str) or not group:
        raise _fail(name, "group must be a non-empty string")
    alerts = raw.get("alerts", {})
    if not isinstance(alerts, Mapping) or set(alerts) - _ALERT_FIELDS:
        raise _fail(name, f"alerts takes only {sorted(_ALERT_FIELDS)}")
    for key, value in alerts.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise _fail(name, f"alerts.{key} must be a number >= 0 or None (off), not {value!r}")
    return QueueSpec(
        name, concurrency, pool, group, priority, retry, retention, rate_limit, dict(alerts)
    )


def _numbers(
    name: str, section: str, raw: Any, allowed: set[str], minimum: float
) -> dict[str, Any]:
    """A dict section of numbers (retry, retention) with only the allowed keys."""
    if not isinstance(raw, Mapping) or set(raw) - allowed:
        raise _fail(name, f"{section} takes only {sorted(allowed)}")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise _fail(name, f"{section}.{key} must be a number >= {minimum}, not {value!r}")
    return dict(raw)


def parse_queues(raw: Mapping[str, Any]) -> dict[str, QueueSpec]:
    if not isinstance(raw, Mapping) or not raw:
        raise ImproperlyConfigured("TASKYARD_QUEUES must declare at least one queue")
    specs = {name: parse_queue(name, value) for name, value in raw.items()}
    pools: dict[str, str] = {}
    for spec in specs.values():
        if pools.setdefault(spec.group, spec.pool) != spec.pool:
            raise _fail(spec.name, f"group {spec.group!r} mixes pools")
    return specs


def worker_commands(specs: Mapping[str, QueueSpec]) -> list[str]:
    """Production `celery worker` command lines, one per queue group: the group's queues,
    their summed concurrency and their pool."""
    groups: dict[str, list[QueueSpec]] = {}
    for spec in specs.values():
        groups.setdefault(spec.group, []).append(spec)
    lines = []
    for group, members in groups.items():
        queues = ",".join(spec.name for spec in members)
        concurrency = sum(spec.concurrency for spec in members)
        lines.append(
            f"celery -A config worker --queues={queues} --concurrency={concurrency} "
            f"--pool={members[0].pool} --hostname={group}@%h --loglevel=INFO"
        )
    return lines


T = TypeVar("T")
_parsed: dict[str, tuple[Any, Any]] = {}


def _cached(setting: str, parse: Callable[[Any], T]) -> T:
    """``parse(settings.<setting>)``, parsed again only when the setting object changes."""
    raw = getattr(settings, setting)
    hit = _parsed.get(setting)
    if hit is not None and hit[0] is raw:
        return cast(T, hit[1])
    value = parse(raw)
    _parsed[setting] = (raw, value)
    return value


def queue_specs() -> dict[str, QueueSpec]:
    """settings.TASKYARD_QUEUES, validated."""
    return _cached("TASKYARD_QUEUES", parse_queues)


def rate_limit_specs() -> dict[str, Rate]:
    """settings.TASKYARD_RATE_LIMITS, validated."""
    return _cached("TASKYARD_RATE_LIMITS", parse_rate_limits)


def throttle_specs() -> dict[str, Rate]:
    """settings.API_THROTTLE_RATES (per-user API limits), validated."""
    return _cached(
        "API_THROTTLE_RATES",
        lambda raw: {
            scope: parse_rate(rate, f"API_THROTTLE_{scope.upper()}") for scope, rate in raw.items()
        },
    )


# --- Providers (queueing/control/providers.py, docs/providers.md) -----------------------

_PROVIDER_FIELDS = {
    "base_url",
    "timeout",
    "rate_limit",
    "concurrency",
    "breaker",
    "cost_per_call",
    "cost_unit",
    "monthly_budget",
    "health_url",
    "health_check",
}
_BREAKER_FIELDS = {"failures", "failure_ratio", "min_calls", "window", "open_seconds", "probes"}


@dataclass(frozen=True)
class BreakerSpec:
    """Opens after ``failures`` failures in a row, or when at least ``min_calls`` calls in
    the last ``window`` seconds failed at ``failure_ratio`` or more; stays open
    ``open_seconds``; then lets ``probes`` calls through (half-open)."""

    failures: int = 5
    failure_ratio: float = 0.5
    min_calls: int = 10
    window: float = 60.0
    open_seconds: float = 30.0
    probes: int = 1


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    base_url: str
    timeout: float = 10.0
    # The ceiling of the adaptive rate: 429s lower the effective rate, success raises it
    # back to this.
    rate_limit: Rate | None = None
    concurrency: int | None = None
    breaker: BreakerSpec = field(default_factory=BreakerSpec)
    cost_per_call: float = 0.0
    cost_unit: str = "USD"
    monthly_budget: float | None = None
    health_url: str = ""  # absolute, or relative to base_url
    health_check: str = ""  # dotted path of a callable(spec) -> None, raising on failure


def _provider_fail(name: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"TASKYARD_PROVIDERS[{name!r}]: {message}")


def _positive(name: str, key: str, value: Any, *, integer: bool = False) -> Any:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise _provider_fail(name, f"{key} must be {kind}, not {value!r}")
    return value


def parse_provider(name: str, raw: Mapping[str, Any]) -> ProviderSpec:
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise _provider_fail(str(name), "a provider name is letters, digits, - and _")
    if not isinstance(raw, Mapping):
        raise _provider_fail(name, "must be a dict of settings")
    unknown = set(raw) - _PROVIDER_FIELDS
    if unknown:
        raise _provider_fail(
            name, f"unknown field(s) {sorted(unknown)}; known: {sorted(_PROVIDER_FIELDS)}"
        )
    base_url = raw.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise _provider_fail(name, f"base_url must be an http(s) URL, not {base_url!r}")
    breaker_raw = raw.get("breaker", {})
    if not isinstance(breaker_raw, Mapping) or set(breaker_raw) - _BREAKER_FIELDS:
        raise _provider_fail(name, f"breaker takes only {sorted(_BREAKER_FIELDS)}")
    breaker = BreakerSpec(
        **{
            key: _positive(
                name, f"breaker.{key}", value, integer=key in ("failures", "min_calls", "probes")
            )
            for key, value in breaker_raw.items()
        }
    )
    if breaker.failure_ratio > 1:
        raise _provider_fail(name, "breaker.failure_ratio is a fraction, at most 1")
    rate = raw.get("rate_limit")
    budget = raw.get("monthly_budget")
    cost = raw.get("cost_per_call", 0.0)
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        raise _provider_fail(name, f"cost_per_call must be a number >= 0, not {cost!r}")
    return ProviderSpec(
        name=name,
        base_url=base_url.rstrip("/"),
        timeout=float(_positive(name, "timeout", raw.get("timeout", 10.0))),
        rate_limit=parse_rate(rate, f"TASKYARD_PROVIDERS[{name!r}].rate_limit") if rate else None,
        concurrency=_positive(name, "concurrency", raw["concurrency"], integer=True)
        if raw.get("concurrency") is not None
        else None,
        breaker=breaker,
        cost_per_call=float(cost),
        cost_unit=str(raw.get("cost_unit", "USD")),
        monthly_budget=float(_positive(name, "monthly_budget", budget))
        if budget is not None
        else None,
        health_url=str(raw.get("health_url", "")),
        health_check=str(raw.get("health_check", "")),
    )


def parse_providers(raw: Mapping[str, Any]) -> dict[str, ProviderSpec]:
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("TASKYARD_PROVIDERS must be a dict of name: settings")
    return {name: parse_provider(name, value) for name, value in raw.items()}


def provider_specs() -> dict[str, ProviderSpec]:
    """settings.TASKYARD_PROVIDERS, validated."""
    return _cached("TASKYARD_PROVIDERS", parse_providers)


def check_all() -> None:
    """Parse every declaration now (at start): ImproperlyConfigured on the first bad one."""
    queue_specs()
    rate_limit_specs()
    throttle_specs()
    provider_specs()

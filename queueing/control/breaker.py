"""Circuit breaker and adaptive rate of a provider, shared by every worker in Redis.

Three Lua scripts keep each decision atomic across processes and hosts, on Redis's clock:
``_ADMIT`` lets a call through or says how long to wait (open, half-open with its probe
in flight, cooling down after a 429), then the call takes a start from the provider's
sliding-log rate limit at its current effective rate; ``_RECORD`` moves the breaker after
the call; ``_ADAPT`` halves the effective rate on a 429 and adds a tenth of the ceiling
back per period of success. The guard around a call is queueing/control/providers.py; the
maths is in docs/providers.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from queueing.broker import shared_redis
from queueing.control.limits import RateLimiter
from queueing.specs import ProviderSpec, Rate

STATE_KEY = "taskyard:provider:{name}"
# A half-open probe that has not reported back within this many timeouts is presumed
# lost (its worker died) and another call may probe.
PROBE_TIMEOUT_FACTOR = 2
# A half-open provider whose probe is in flight holds other calls this long.
HALF_OPEN_WAIT_SECONDS = 1.0
# Each period of success adds ceiling / RATE_RECOVERY_STEPS back to the effective rate.
RATE_RECOVERY_STEPS = 10

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

# KEYS[1] state hash. ARGV: probes, probe timeout ms, ceiling. Returns {decision, wait ms,
# effective limit}: decision "closed" / "probe" go ahead; "open", "half_open",
# "cooldown" wait. Redis's clock, so hosts with skewed clocks agree.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = KEYS[1]
local limit = tonumber(redis.call('HGET', h, 'rate_limit') or ARGV[3])
local cooldown = tonumber(redis.call('HGET', h, 'cooldown_until') or '0')
if cooldown > now then return {'cooldown', cooldown - now, limit} end
local state = redis.call('HGET', h, 'state') or 'closed'
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', h, 'reopen_at') or '0')
  if now < reopen then return {'open', reopen - now, limit} end
  redis.call('HSET', h, 'state', 'half_open', 'probes', 0)
  state = 'half_open'
end
if state == 'half_open' then
  local probes = tonumber(redis.call('HGET', h, 'probes') or '0')
  local started = tonumber(redis.call('HGET', h, 'probe_started') or '0')
  if probes >= tonumber(ARGV[1]) then
    if now - started < tonumber(ARGV[2]) then return {'half_open', 0, limit} end
    probes = 0
  end
  redis.call('HSET', h, 'probes', probes + 1, 'probe_started', now)
  return {'probe', 0, limit}
end
return {'closed', 0, limit}
"""

# KEYS[1] state hash. ARGV: outcome ("ok", "failure", "neutral"), was probe (0/1),
# failures, failure ratio, min calls, window ms, open ms. Returns the state after.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = KEYS[1]
local outcome, probe = ARGV[1], ARGV[2] == '1'
local state = redis.call('HGET', h, 'state') or 'closed'
local start = tonumber(redis.call('HGET', h, 'window_start') or '0')
local calls = tonumber(redis.call('HGET', h, 'window_calls') or '0')
local failed = tonumber(redis.call('HGET', h, 'window_failures') or '0')
if now - start > tonumber(ARGV[6]) then start, calls, failed = now, 0, 0 end
local function open()
  redis.call('HSET', h, 'state', 'open', 'reopen_at', now + tonumber(ARGV[7]),
             'opened_at', now, 'probes', 0)
  redis.call('HINCRBY', h, 'opened_count', 1)
  state = 'open'
end
if outcome == 'failure' then
  calls, failed = calls + 1, failed + 1
  local row = redis.call('HINCRBY', h, 'consecutive_failures', 1)
  if probe or state == 'half_open' then
    open()
  elseif state == 'closed' and (row >= tonumber(ARGV[3]) or
      (calls >= tonumber(ARGV[5]) and failed / calls >= tonumber(ARGV[4]))) then
    open()
  end
else
  if outcome == 'ok' then calls = calls + 1 end
  redis.call('HSET', h, 'consecutive_failures', 0)
  if probe or state == 'half_open' then
    redis.call('HSET', h, 'state', 'closed', 'probes', 0)
    state, start, calls, failed = 'closed', now, 0, 0
  end
end
redis.call('HSET', h, 'window_start', start, 'window_calls', calls, 'window_failures', failed)
if outcome == 'ok' then redis.call('HSET', h, 'last_success_at', now) end
return state
"""

# KEYS[1] state hash. ARGV: "429" or "ok", retry-after ms (0: one period), ceiling,
# period ms. Multiplicative decrease on a 429, additive increase per period of success.
_ADAPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = KEYS[1]
local ceiling = tonumber(ARGV[3])
local limit = tonumber(redis.call('HGET', h, 'rate_limit') or ceiling)
local changed = tonumber(redis.call('HGET', h, 'rate_changed_at') or '0')
if ARGV[1] == '429' then
  limit = math.max(1, math.floor(limit / 2))
  local wait = tonumber(ARGV[2])
  if wait <= 0 then wait = tonumber(ARGV[4]) end
  redis.call('HSET', h, 'rate_limit', limit, 'rate_changed_at', now,
             'cooldown_until', now + wait)
  redis.call('HINCRBY', h, 'rate_limited_count', 1)
elseif limit < ceiling and now - changed >= tonumber(ARGV[4]) then
  limit = math.min(ceiling, limit + math.max(1, math.floor(ceiling / tonumber(ARGV[5]))))
  redis.call('HSET', h, 'rate_limit', limit, 'rate_changed_at', now)
end
return limit
"""


class ProviderDeferred(Exception):
    """The call cannot be made now (breaker open, rate spent, 429): the job goes back to
    the ledger for ``wait`` seconds, no attempt spent."""

    def __init__(self, provider: str, wait: float, reason: str) -> None:
        super().__init__(f"provider {provider}: {reason}; retry in {wait:.1f}s")
        self.provider = provider
        self.wait = wait
        self.reason = reason


@dataclass
class Admission:
    decision: str  # closed, probe
    limit: int


class ProviderGuard:
    """Breaker and adaptive rate of one provider, in Redis."""

    def __init__(self, spec: ProviderSpec, client: redis.Redis | None = None) -> None:
        self.spec = spec
        self.client = client or shared_redis(text=True)
        self.key = STATE_KEY.format(name=spec.name)

    @property
    def ceiling(self) -> int:
        return self.spec.rate_limit.limit if self.spec.rate_limit else 0

    def admit(self) -> Admission:
        """Let one call through, or raise ProviderDeferred."""
        probe_ms = int(self.spec.timeout * PROBE_TIMEOUT_FACTOR * 1000)
        decision, wait_ms, limit = self.client.eval(
            _ADMIT, 1, self.key, self.spec.breaker.probes, probe_ms, self.ceiling
        )
        limit = int(limit)
        if decision == "open":
            raise ProviderDeferred(self.spec.name, int(wait_ms) / 1000, "circuit breaker open")
        if decision == "half_open":
            raise ProviderDeferred(
                self.spec.name, HALF_OPEN_WAIT_SECONDS, "circuit breaker half-open, probing"
            )
        if decision == "cooldown":
            raise ProviderDeferred(
                self.spec.name, int(wait_ms) / 1000, "rate limited by the provider (429)"
            )
        if self.spec.rate_limit is not None and limit > 0:
            rate = Rate(limit, self.spec.rate_limit.period)
            wait = RateLimiter(self.client).acquire(f"provider:{self.spec.name}", rate)
            if wait > 0:
                if decision == "probe":
                    self.record("neutral", probe=True)
                raise ProviderDeferred(self.spec.name, wait, f"rate {rate} spent")
        return Admission(str(decision), limit)

    def peek(self) -> tuple[float, str] | None:
        """(seconds, reason) the provider is closed for, without taking anything."""
        state = self.client.hgetall(self.key)
        now_ms = time.time() * 1000
        cooldown = float(state.get("cooldown_until", 0))
        if cooldown > now_ms:
            return (cooldown - now_ms) / 1000, "rate limited by the provider (429)"
        if state.get("state") == "open" and float(state.get("reopen_at", 0)) > now_ms:
            return (float(state["reopen_at"]) - now_ms) / 1000, "circuit breaker open"
        return None

    def record(self, outcome: str, *, probe: bool) -> str:
        """Feed the breaker: "ok", "failure" or "neutral". Returns the state after."""
        breaker = self.spec.breaker
        state = self.client.eval(
            _RECORD,
            1,
            self.key,
            outcome,
            "1" if probe else "0",
            breaker.failures,
            breaker.failure_ratio,
            breaker.min_calls,
            int(breaker.window * 1000),
            int(breaker.open_seconds * 1000),
        )
        return str(state)

    def adapt(self, *, rate_limited: bool, retry_after: float | None = None) -> int:
        """Adjust the effective rate after a call; returns it."""
        if self.spec.rate_limit is None and not rate_limited:
            return 0
        period_ms = int((self.spec.rate_limit.period if self.spec.rate_limit else 1.0) * 1000)
        limit = self.client.eval(
            _ADAPT,
            1,
            self.key,
            "429" if rate_limited else "ok",
            int((retry_after or 0) * 1000),
            self.ceiling or 1,
            period_ms,
            RATE_RECOVERY_STEPS,
        )
        return int(limit)

    def reset(self) -> None:
        """Forget the breaker and rate state (operator action, tests)."""
        self.client.delete(self.key, f"taskyard:rate:provider:{self.spec.name}")

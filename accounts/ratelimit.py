"""Per-key rate limits (GCRA) and daily quotas, atomic in Redis. No Django imports.

GCRA (the generic cell rate algorithm) keeps one timestamp per key, the
"theoretical arrival time": a request is allowed when it is no more than the
burst tolerance ahead of now, and every allowed request pushes it one emission
interval (window / limit) further. It is exact under concurrency because the
whole decision is one Lua script.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from dataplane.keys import RedisKeys


@dataclass(frozen=True)
class RatePolicy:
    limit: int  # requests per window
    window_seconds: int
    burst: int
    daily_quota: int | None

    @property
    def emission_ms(self) -> float:
        return self.window_seconds * 1000 / self.limit

    @functools.cached_property
    def header_value(self) -> bytes:
        return self.header().encode()

    def header(self) -> str:
        """`RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers)."""
        parts = [f'"burst";q={self.burst};w={max(1, round(self.burst * self.emission_ms / 1000))}']
        if self.daily_quota:
            parts.append(f'"daily";q={self.daily_quota};w=86400')
        return ", ".join(parts)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    reset_seconds: int  # until the burst is full again
    retry_after_seconds: int  # 0 when allowed
    daily_remaining: int | None
    reason: str = ""  # "rate" or "quota" when refused

    def header(self) -> str:
        """`RateLimit` (draft-ietf-httpapi-ratelimit-headers)."""
        parts = [f'"burst";r={self.remaining};t={self.reset_seconds}']
        if self.daily_remaining is not None:
            parts.append(f'"daily";r={self.daily_remaining};t={seconds_to_midnight()}')
        return ", ".join(parts)


# Time comes from the Redis server, not the callers: concurrent requests from
# many web processes are then judged in the order Redis runs them, and the
# web hosts' clocks do not matter.
# A Lua function shared by BODY (the rate limit alone, for metadata requests)
# and the gateway's admit-and-enqueue script (one round trip per inference).
FUNCTION = """
local function rate_limit(gcra_key, quota_prefix, last_used_key, t, burst, quota, public_id)
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    local day_left = 86400 - math.floor(now / 1000) % 86400
    local daily_key = quota_prefix .. ':' .. math.floor(now / 86400000)
    local tolerance = (burst - 1) * t
    local tat = tonumber(redis.call('GET', gcra_key) or '0')
    if tat < now then tat = now end
    if tat - now > tolerance then
        local retry = tat - now - tolerance
        return {0, 0, math.ceil((tat - now) / 1000), math.ceil(retry / 1000), -1, 'rate'}
    end
    local used = 0
    if quota > 0 then
        used = tonumber(redis.call('GET', daily_key) or '0')
        if used >= quota then
            return {0, 0, 0, day_left, 0, 'quota'}
        end
        used = redis.call('INCR', daily_key)
        if used == 1 then redis.call('EXPIRE', daily_key, day_left + 60) end
    end
    local new_tat = tat + t
    redis.call('SET', gcra_key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
    redis.call('HSET', last_used_key, public_id, tostring(now))
    local remaining = math.floor((tolerance - (new_tat - now - t)) / t)
    if remaining < 0 then remaining = 0 end
    local daily = -1
    if quota > 0 then daily = quota - used end
    return {1, remaining, math.ceil((new_tat - now) / 1000), 0, daily, ''}
end
"""

# KEYS: gcra state, daily counter prefix (the UTC day is appended), last-used hash
# ARGV: emission_ms, burst, daily_quota (0: none), public_id
# The body of the rate limit script (the gateway's ScriptBatcher runs it after FUNCTION).
BODY = """
return rate_limit(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
"""


def seconds_to_midnight(now: dt.datetime | None = None) -> int:
    now = now or dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


def redis_keys(keys: RedisKeys, public_id: str) -> list[str]:
    """KEYS of the rate-limit script, in its order."""
    return [keys.rate_state(public_id), keys.quota_prefix(public_id), keys.key_last_used(public_id)]


def script_args(policy: RatePolicy, public_id: str) -> list[str | int | float]:
    return [policy.emission_ms, policy.burst, policy.daily_quota or 0, public_id]


def decision(raw: list[object]) -> RateDecision:
    allowed, remaining, reset, retry, daily, reason = raw
    daily_value = int(daily)  # type: ignore[call-overload]
    return RateDecision(
        allowed=bool(allowed),
        remaining=int(remaining),  # type: ignore[call-overload]
        reset_seconds=int(reset),  # type: ignore[call-overload]
        retry_after_seconds=int(retry),  # type: ignore[call-overload]
        daily_remaining=None if daily_value < 0 else daily_value,
        reason=reason.decode() if isinstance(reason, bytes) else str(reason),
    )

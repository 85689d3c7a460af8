"""The Lua scripts that put a request on a version's stream, and the stream's consumer group.

The gateway runs them (gateway/dispatch.py); the workers read what they append
(workers/consumer.py). No Django imports.
"""

from __future__ import annotations

# The consumer group every worker of a version reads the version's stream in.
GROUP = "workers"


# Appends a request unless the stream already holds max_queue_size entries.
# Workers XDEL what they have answered, so XLEN is what waits plus what runs.
ENQUEUE_SCRIPT = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""


# The rate limit and the enqueue in one script body: one round trip per inference.
# Its prelude is the rate limiter's Lua function `rate_limit` (accounts.ratelimit.FUNCTION).
# KEYS: stream, GCRA state, daily quota prefix, last-used hash.
# ARGV: max_queue_size, emission_ms, burst, daily_quota, public_id, then the entry's fields.
# Returns {rate decision, entry id}: the id is nil when the rate limit refused
# (nothing was enqueued) and 0 when the queue was full.
ADMIT_BODY = """
local decision = rate_limit(KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
if decision[1] == 0 then
    return {decision, false}
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return {decision, 0}
end
return {decision, redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))}
"""

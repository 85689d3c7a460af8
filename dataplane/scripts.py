"""The Lua scripts that put a request on a version's stream, the one that takes a
batch off its streams in priority order, and the streams' consumer group.

The gateway runs the enqueue scripts (gateway/dispatch.py); the workers read what
they append (workers/intake.py). Each priority level has its own stream
(dataplane/priority.py); a level's cap counts the requests of every level. No
Django imports.
"""

from __future__ import annotations

# The consumer group every worker of a version reads the version's streams in.
GROUP = "workers"


# Appends a request to its level's stream unless the version's streams already hold
# the level's cap together. Workers XDEL what they have answered, so XLEN is what
# waits plus what runs.
# KEYS: the level's stream, then the version's other level streams.
# ARGV: the level's cap, then the entry's fields.
ENQUEUE_SCRIPT = """
local queued = 0
for i = 1, #KEYS do
    queued = queued + redis.call('XLEN', KEYS[i])
end
if queued >= tonumber(ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""


# The rate limit and the enqueue in one script body: one round trip per inference.
# Its prelude is the rate limiter's Lua function `rate_limit` (accounts.ratelimit.FUNCTION).
# KEYS: the level's stream, GCRA state, daily quota prefix, last-used hash, then the
# version's other level streams.
# ARGV: the level's cap, emission_ms, burst, daily_quota, public_id, then the entry's fields.
# Returns {rate decision, entry id}: the id is nil when the rate limit refused
# (nothing was enqueued) and 0 when the queue was full for this level.
ADMIT_BODY = """
local decision = rate_limit(KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
if decision[1] == 0 then
    return {decision, false}
end
local queued = redis.call('XLEN', KEYS[1])
for i = 5, #KEYS do
    queued = queued + redis.call('XLEN', KEYS[i])
end
if queued >= tonumber(ARGV[1]) then
    return {decision, 0}
end
return {decision, redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))}
"""


# Takes up to COUNT new entries for one consumer, from the highest level's stream
# first: strict priority in one round trip (a multi-stream XREADGROUP would take up
# to COUNT from every stream). Never blocks; an idle worker blocks on all the
# streams with XREADGROUP instead (workers/intake.py).
# KEYS: the level streams, highest first. ARGV: group, consumer, count.
# Returns {level index (1-based), entries} for each level it took from.
TAKE_SCRIPT = """
local wanted = tonumber(ARGV[3])
local taken = {}
for i = 1, #KEYS do
    if wanted <= 0 then
        break
    end
    local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', wanted, 'STREAMS', KEYS[i], '>')
    if read then
        local entries = read[1][2]
        wanted = wanted - #entries
        taken[#taken + 1] = {i, entries}
    end
end
return taken
"""

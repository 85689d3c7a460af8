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


# A worker's answers to one batch in one command: each gateway's replies pushed on its reply
# list (which then lives REPLY_TTL seconds more), then the answered entries acknowledged and
# deleted, in that order (a gateway that finds an entry gone relies on its reply being in its
# list already: gateway/dispatch.py). Not on a Redis Cluster, where the lists and a version's
# streams are in different slots (workers/consumer.py sends two pipelines there).
# KEYS: the reply lists, then the streams. ARGV: the number of lists, the TTL, the group, then
# per list its reply count and replies, then per stream its entry count and entry ids.
ANSWER_SCRIPT = """
local lists, ttl, group = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local a = 4
local function each(command, key, prefix, count)
    -- in chunks: unpack is limited by Lua's C stack
    for first = a, a + count - 1, 1000 do
        local last = math.min(first + 999, a + count - 1)
        if prefix then
            redis.call(command, key, prefix, unpack(ARGV, first, last))
        else
            redis.call(command, key, unpack(ARGV, first, last))
        end
    end
end
for i = 1, lists do
    local count = tonumber(ARGV[a]); a = a + 1
    each('RPUSH', KEYS[i], nil, count)
    redis.call('EXPIRE', KEYS[i], ttl)
    a = a + count
end
for i = lists + 1, #KEYS do
    local count = tonumber(ARGV[a]); a = a + 1
    each('XACK', KEYS[i], group, count)
    each('XDEL', KEYS[i], nil, count)
    a = a + count
end
return 0
"""

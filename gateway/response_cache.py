"""Stored answers in Redis, with a TTL each and one memory cap for all of them. No Django imports.

Two users share the store: the response cache (a version's answer to a repeated
request, `RedisKeys.response_cache`) and the fallbacks' cached answers (a served
name's last good answer, `RedisKeys.fallback_answer`). Each caller picks its key
and TTL; the cap is the store's.

A key names a canonical request (`digest`): each input's name, datatype, shape and
raw little-endian bytes, in name order, and the requested outputs (None: all). So a
JSON request and a binary one of the same tensors share a key, and the binary
outputs flags and request id, which change only how an answer is written, do not
count. The value is the answer's outputs as `wire.encode_reply` writes them; each
hit is encoded for its own request (`protocol.encode_response`).

The cap: every stored value is indexed in a sorted set by expiry, its size in a hash
and the total in a counter. Storing runs one script that drops the index members of
expired values, stores the new one with its TTL (PX) and, while the total is over the
cap, evicts the soonest-expiring values. Each script runs atomically, so concurrent
stores from many gateways keep the total exact. The store's scripts touch keys they
did not declare (the values they evict): fine on one Redis, not on Redis Cluster.

Redis trouble never fails a request: a look-up that errs is a miss, a store that
errs is skipped; both are logged.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from typing import Any

import orjson
import redis.asyncio as aioredis

from accounts import ratelimit
from dataplane.keys import RedisKeys
from dataplane.wire import WireReply, decode_reply, encode_reply
from gateway.coalesce import ScriptBatcher
from gateway.protocol import ParsedRequest

logger = logging.getLogger(__name__)

# KEYS: the value; with a key's rate limit, also its GCRA state, daily quota prefix and
# last-used hash. ARGV: (with a rate limit) emission_ms, burst, daily_quota, public_id.
# Returns false on a miss (the rate limit is then left to the enqueue's admission, so a
# request counts once), else {rate decision or false, value or false}: the value is false
# when the rate limit refused. A hit is rate-limited like any request: it costs the client
# no model time, but a key's rate and quota bound what it may ask, answered from anywhere.
LOOKUP_BODY = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
if #KEYS == 1 then return {false, value} end
local decision = rate_limit(KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
if decision[1] == 0 then return {decision, false} end
return {decision, value}
"""

# KEYS: the value, the expiry index, the sizes hash, the total. ARGV: value, TTL (ms), cap (bytes).
# Returns how many values were evicted to make room.
STORE_BODY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = redis.call('GET', KEYS[4])
if total then
    total = tonumber(total)
else
    -- The counter was lost (flushed or evicted by Redis): the sizes still say what is held.
    total = 0
    for _, size in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(size) end
end
local function forget(member)
    local size = redis.call('HGET', KEYS[3], member)
    if size then
        total = total - tonumber(size)
        redis.call('HDEL', KEYS[3], member)
    end
    redis.call('ZREM', KEYS[2], member)
end
-- Expired values are gone already; their index members and sizes go now, a bounded number per store.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)) do
    forget(member)
end
forget(KEYS[1])  -- a value stored again: its old size no longer counts
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], #ARGV[1])
total = total + #ARGV[1]
local cap = tonumber(ARGV[3])
local evicted = 0
while total > cap do
    local first = redis.call('ZRANGE', KEYS[2], 0, 0)
    if #first == 0 then break end
    forget(first[1])
    redis.call('DEL', first[1])
    evicted = evicted + 1
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[4], total)
return evicted
"""


def digest(request: ParsedRequest) -> str:
    """The canonical request's hash: what makes two requests the same question."""
    h = hashlib.blake2b(digest_size=16)
    h.update(b"%d;" % len(request.inputs))  # with each header's byte count below: framing without ambiguity
    for item in sorted(request.inputs, key=lambda i: i.name):
        h.update(orjson.dumps([item.name, item.datatype, item.shape, len(item.raw)]))
        h.update(item.raw)
    h.update(orjson.dumps(None if request.outputs is None else sorted(request.outputs)))
    return h.hexdigest()


def answer_bytes(reply: WireReply, label: str = "") -> bytes:
    """What is stored of an answer: its outputs (no timings, worker or request id), and a `label`
    in the request id's place (the fallbacks' kept answers name the version that computed them)."""
    return encode_reply(WireReply(request_id=label, outputs=reply.outputs))


class ResponseCache:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, max_bytes: int, max_entry_bytes: int) -> None:
        self.keys = keys
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._lookup = ScriptBatcher(redis, LOOKUP_BODY, prelude=ratelimit.FUNCTION)
        self._store = ScriptBatcher(redis, STORE_BODY)
        # On a cluster the stored answers ({prefix:cache}) and a key's rate state are in different
        # slots: a hit is looked up first and rate-limited by a second script.
        self._split_admission = keys.cluster
        self._rate_limit = ScriptBatcher(redis, ratelimit.BODY, prelude=ratelimit.FUNCTION)

    async def get(self, key: str) -> WireReply | None:
        """The stored answer, or None (also when Redis cannot be asked)."""
        reply, _ = await self.lookup(key)
        return reply

    async def lookup(
        self, key: str, admission: tuple[list[str], list[Any]] | None = None
    ) -> tuple[WireReply | None, list[Any] | None]:
        """The stored answer and, with `admission` (a key's rate-limit keys and arguments, as
        for the enqueue), the rate limit's decision on a hit, in one round trip. A miss returns
        (None, None) and has not counted against the rate limit; a refused hit returns
        (None, the refusal)."""
        split = admission is not None and self._split_admission
        keys, args = ([key], []) if admission is None or split else ([key, *admission[0]], list(admission[1]))
        try:
            found = await self._lookup(keys, args)
            if found and split and admission is not None:
                decision = await self._rate_limit(admission[0], list(admission[1]))
                found = [decision, found[1] if int(decision[0]) == 1 else False]
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("response cache look-up failed, answering as a miss: %s", exc)
            return None, None
        if not found:
            return None, None
        decision, value = found
        if not value:
            return None, decision or None
        try:
            return decode_reply(value), decision or None
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            logger.error("undecodable value in the response cache at %s, answering as a miss: %s", key, exc)
            return None, None

    async def put(self, key: str, reply: WireReply, ttl_s: float, label: str = "") -> bool:
        """Store an answer for `ttl_s` seconds (with `label`, which `get` returns as the request id);
        False when it is over the per-entry limit or Redis erred."""
        value = answer_bytes(reply, label)
        if len(value) > self.max_entry_bytes or ttl_s <= 0:
            return False
        keys = [key, self.keys.cache_index(), self.keys.cache_sizes(), self.keys.cache_bytes()]
        try:
            await self._store(keys, [value, max(1, round(ttl_s * 1000)), self.max_bytes])
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("response cache store failed, not cached: %s", exc)
            return False
        return True

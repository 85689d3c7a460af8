"""One Redis command for many concurrent requests.

Every inference request runs a small Lua script (the rate limit and the
enqueue). Issued one by one, each costs a full redis-py command on the event
loop, which measured as the web process's largest cost at high concurrency.
A `ScriptBatcher` collects the calls made while its previous group was in
flight and sends them as the next group ("group commit"): at concurrency 1 a
call goes out at once, under load many share one round trip.

A group is one `EVALSHA` of a wrapper script that runs the script's body once
per call, each with its own KEYS and ARGV, and answers one array: redis-py
packs one command and parses one reply per group instead of per request, and
Redis starts one script instead of many. Each call runs under `pcall`, so an
error in one call is that call's error alone; calls run in order, each seeing
the effects of the ones before it, exactly as separate scripts would.

On a Redis Cluster one script may only touch keys of one slot, so a group is
split by the slot of its calls' keys (every call's keys share a slot: see
dataplane/keys.py) and the slots' scripts run concurrently, one per slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException

from dataplane.link import async_link_for

logger = logging.getLogger(__name__)

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]

# ARGV: the number of calls n, then each call's key count and argument count,
# then every call's arguments in order; KEYS: every call's keys in order.
GROUP_TEMPLATE = """
{prelude}
local function run_call(KEYS, ARGV)
{body}
end
local n = tonumber(ARGV[1])
local results = {{}}
local k, a = 0, 1 + 2 * n
for c = 1, n do
    local nk, na = tonumber(ARGV[2 * c]), tonumber(ARGV[2 * c + 1])
    local ok, result = pcall(run_call, {{unpack(KEYS, k + 1, k + nk)}}, {{unpack(ARGV, a + 1, a + na)}})
    if not ok then
        if type(result) == 'table' then result = result.err end
        result = redis.error_reply(tostring(result))
    elseif result == nil then
        result = false
    end
    results[c] = result
    k, a = k + nk, a + na
end
return results
"""


def group_script(body: str, prelude: str = "") -> str:
    """The wrapper that runs `body` (a script's text, using KEYS and ARGV) once per call."""
    return GROUP_TEMPLATE.format(prelude=prelude, body=body)


class ScriptBatcher:
    def __init__(self, client: aioredis.Redis, body: str, prelude: str = "", max_batch: int = 256) -> None:
        self._client = client
        self._source = group_script(body, prelude)
        self._sha = client.register_script(self._source).sha
        self._max_batch = max_batch
        self._pending: list[Call] = []
        self._running = False
        # One group in flight at a time (see _drain): on one Redis or Sentinel it goes on a
        # connection of its own, straight (dataplane/link.py); None on a cluster, whose client
        # routes each slot's group.
        self._link = async_link_for(client)

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    await self._run(batch)
                except Exception as exc:
                    # A bug, not Redis: its callers get an error they handle, instead of waiting forever.
                    logger.exception("a grouped script call failed unexpectedly")
                    self._fail(batch, aioredis.RedisError(f"the grouped script call failed: {exc!r}"))
        finally:
            self._running = False

    async def _run(self, batch: list[Call]) -> None:
        if self._link is not None:
            await self._run_group(batch)
            return
        by_slot: dict[int, list[Call]] = {}
        for call in batch:
            slots = {key_slot(_encoded(key)) for key in call[0]}
            if len(slots) > 1:  # a naming mistake; it must not fail the other calls of its slot
                self._fail([call], aioredis.RedisError(f"a script's keys are in {len(slots)} cluster slots"))
                continue
            by_slot.setdefault(slots.pop() if slots else -1, []).append(call)
        await asyncio.gather(*(self._run_group(group) for group in by_slot.values()))

    async def _run_group(self, batch: list[Call]) -> None:
        counts: list[Any] = [len(batch)]
        all_keys: list[Any] = []
        all_args: list[Any] = []
        for keys, args, _ in batch:
            counts += [len(keys), len(args)]
            all_keys += keys
            all_args += args
        try:
            if self._link is not None:
                results = await self._link.evalsha(self._sha, self._source, all_keys, [*counts, *all_args])
            else:
                command = (len(all_keys), *all_keys, *counts, *all_args)
                try:
                    results = await self._client.evalsha(self._sha, *command)
                except NoScriptError:
                    # Redis restarted or its scripts were flushed: load it again, once.
                    self._sha = await self._client.script_load(self._source)
                    results = await self._client.evalsha(self._sha, *command)
        except (aioredis.RedisError, OSError) as exc:
            self._fail(batch, exc)
            return
        except RedisClusterException as exc:
            # Not a RedisError: keys of several slots, or no slot map yet. The callers handle RedisError.
            self._fail(batch, aioredis.RedisError(f"Redis Cluster: {exc}"))
            return
        if not isinstance(results, list) or len(results) != len(batch):
            self._fail(batch, aioredis.RedisError(f"the group script answered {results!r:.80} for {len(batch)} calls"))
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[Call], exc: Exception) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(exc)


def _encoded(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()

"""One Redis round trip for many concurrent requests.

Every inference request runs two small Lua scripts (the rate limiter and the
enqueue). Issued one by one, each costs a full redis-py command on the event
loop, which measured as the web process's largest cost at high concurrency.
A `ScriptBatcher` collects the calls made while its previous pipeline was in
flight and sends them as the next pipeline ("group commit"): at concurrency 1
a call goes out at once, under load many share one round trip.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, client: aioredis.Redis, source: str, max_batch: int = 512) -> None:
        self._client = client
        self._source = source
        self._sha = client.register_script(source).sha
        self._max_batch = max_batch
        self._pending: list[Call] = []
        self._running = False

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
                await self._run(batch)
        finally:
            self._running = False

    async def _run(self, batch: list[Call], retried: bool = False) -> None:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (aioredis.RedisError, OSError) as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if not retried and any(isinstance(r, NoScriptError) for r in results):
            # Redis restarted or its scripts were flushed: load it again, once.
            try:
                self._sha = await self._client.script_load(self._source)
            except (aioredis.RedisError, OSError) as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            await self._run(batch, retried=True)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

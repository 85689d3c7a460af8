"""Change notices from the control plane, over Redis pub/sub.

One subscription per web process, for every channel the gateway caches
from (registry changes, key changes). While it is not connected, `connected`
is false and the caches that must never serve stale data (keys) bypass
themselves; on every (re)connection every cache is dropped, since anything may
have changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from dataplane.connection import is_cluster_client

logger = logging.getLogger(__name__)

Callback = Callable[[str | None], None]  # None: drop everything


class Notices:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._callbacks: dict[str, Callback] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def on(self, channel: str, callback: Callback) -> None:
        self._callbacks[channel] = callback

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _drop_all(self) -> None:
        for callback in self._callbacks.values():
            callback(None)

    async def _run(self) -> None:
        while True:
            try:
                if is_cluster_client(self._redis):
                    # A cluster client's pubsub picks its node from the slot map, which it
                    # only has once initialised (redis-py does not do it for pubsub).
                    await self._redis.initialize()
            except (aioredis.RedisError, OSError):
                logger.warning("change notices: cannot reach the Redis Cluster; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*self._callbacks)
                self.connected = True
                self._drop_all()
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    data = message["data"]
                    callback = self._callbacks.get(channel)
                    if callback is not None:
                        callback(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except (aioredis.RedisError, OSError):
                logger.warning("change notices: lost Redis; retrying in 1 s")
            self.connected = False
            self._drop_all()
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            await asyncio.sleep(1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

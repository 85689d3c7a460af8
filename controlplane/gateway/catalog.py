"""The gateway's in-process view of the registry: which version a model name
serves, and each version's signature and serving settings.

Read from PostgreSQL on a miss (in a thread, outside the event loop), kept in
memory, and dropped when the registry publishes a change on Redis. A short TTL
bounds staleness even if a change notice is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from django.db import DatabaseError, close_old_connections

logger = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 30.0
MISS_TTL_SECONDS = 1.0


@dataclass(frozen=True)
class VersionEntry:
    id: int
    number: int
    status: str
    signature: dict[str, Any] | None
    max_batch_size: int
    max_queue_size: int
    default_timeout_ms: int
    status_reason: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "ready"


@dataclass
class ModelEntry:
    name: str
    serving: int | None  # version number behind the `production` alias
    versions: dict[int, VersionEntry] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)


class RegistryUnavailable(Exception):
    pass


def _load_model(name: str) -> ModelEntry | None:
    from registry.models import Alias, ModelVersion, RegisteredModel

    close_old_connections()
    try:
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None:
            return None
        alias = Alias.objects.filter(model=model, name="production").values_list("version__number", flat=True).first()
        versions = {
            v.number: VersionEntry(
                id=v.id,
                number=v.number,
                status=v.status,
                signature=v.signature,
                max_batch_size=v.max_batch_size,
                max_queue_size=v.max_queue_size,
                default_timeout_ms=v.default_timeout_ms,
                status_reason=v.status_reason,
            )
            for v in ModelVersion.objects.filter(model=model)
        }
        return ModelEntry(name=name, serving=alias, versions=versions)
    except DatabaseError as exc:
        from django.db import connection

        connection.close()
        raise RegistryUnavailable(str(exc).splitlines()[0] if str(exc) else "database error") from exc


class Catalog:
    def __init__(self, redis_client: aioredis.Redis, channel: str) -> None:
        self._redis = redis_client
        self._channel = channel
        self._entries: dict[str, tuple[ModelEntry | None, float]] = {}
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="turnout-catalog")
        self._listener: asyncio.Task[None] | None = None
        self._loading: dict[str, asyncio.Future[ModelEntry | None]] = {}

    async def get(self, name: str) -> ModelEntry | None:
        self._ensure_listener()
        cached = self._entries.get(name)
        now = time.monotonic()
        if cached is not None:
            entry, expires = cached
            if now < expires:
                return entry
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ModelEntry | None] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            entry = await asyncio.get_running_loop().run_in_executor(self._executor, _load_model, name)
        except RegistryUnavailable as exc:
            future.set_exception(exc)
            future.exception()  # consumed: waiters re-raise it
            raise
        finally:
            self._loading.pop(name, None)
        ttl = CACHE_TTL_SECONDS if entry is not None else MISS_TTL_SECONDS
        self._entries[name] = (entry, time.monotonic() + ttl)
        future.set_result(entry)
        return entry

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._entries.clear()
        else:
            self._entries.pop(name, None)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Anything may have changed while we were not listening.
                self.invalidate()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        data = message["data"]
                        self.invalidate(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except (aioredis.RedisError, OSError):
                logger.warning("catalog listener lost Redis; retrying in 1 s")
                self.invalidate()
                await pubsub.aclose()
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        self._executor.shutdown(wait=False)

"""The gateway's in-process view of the registry: which version a model name
serves, and each version's signature and serving settings.

Read from PostgreSQL on a miss (in a thread, outside the event loop), kept in
memory, and dropped when the registry publishes a change on Redis. A short TTL
bounds staleness even if a change notice is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection

from registry.fallback_policy import FallbackPolicy, PolicyError, parse
from registry.models import Alias, ModelVersion, RegisteredModel
from rollouts.services import Routing, routing_for
from rollouts.splitting import bounds

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
    stages: tuple[str, ...] = ()  # a pipeline version's stage names, in order; empty for a model
    cache_ttl_seconds: int = 0  # the response cache's TTL for this version's answers; 0: no cache
    max_queue_delay_ms: float = 0.0  # the batching settings, for Triton's model configuration
    preferred_batch_sizes: tuple[int, ...] = ()

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def archived(self) -> bool:
        """Retired by a maintainer: never served, so requests naming it get 404."""
        return self.status == "archived"


@dataclass
class ModelEntry:
    name: str
    serving: int | None  # version number behind the `production` alias
    versions: dict[int, VersionEntry] = field(default_factory=dict)
    routing: Routing | None = None  # the active canary, experiment or shadow
    edges: list[int] = field(default_factory=list)  # slot bounds of routing.arms
    fallback: FallbackPolicy | None = None  # what answers when the serving version fails


class RegistryUnavailable(Exception):
    pass


def _load_model(name: str) -> ModelEntry | None:
    # A connection per cache miss, closed at once (see gateway/auth.py).
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
                stages=tuple(s.name for s in sorted(v.stages.all(), key=lambda s: s.position)),
                cache_ttl_seconds=v.cache_ttl_seconds,
                max_queue_delay_ms=v.max_queue_delay_ms,
                preferred_batch_sizes=tuple(v.preferred_batch_sizes or ()),
            )
            for v in ModelVersion.objects.filter(model=model).prefetch_related("stages")
        }
        routing = routing_for(model)
        edges = bounds([arm.weight for arm in routing.arms]) if routing and routing.arms else []
        return ModelEntry(
            name=name, serving=alias, versions=versions, routing=routing, edges=edges, fallback=_fallback(model)
        )
    except DatabaseError as exc:
        raise RegistryUnavailable(str(exc).splitlines()[0] if str(exc) else "database error") from exc
    finally:
        connection.close()


def _fallback(model: RegisteredModel) -> FallbackPolicy | None:
    if not model.fallback:
        return None
    try:
        return parse(model.fallback)
    except PolicyError:
        # Only set_fallback writes it, after the same check; a row edited by hand is not served.
        logger.error("model %s: ignoring a fallback policy that does not parse", model.name, exc_info=True)
        return None


class Catalog:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[ModelEntry | None, float]] = {}
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="turnout-catalog")
        self._loading: dict[str, asyncio.Future[ModelEntry | None]] = {}

    async def get(self, name: str) -> ModelEntry | None:
        cached = self._entries.get(name)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ModelEntry | None] = loop.create_future()
        self._loading[name] = future
        try:
            entry = await loop.run_in_executor(self._executor, _load_model, name)
        except Exception as exc:
            # Whatever went wrong, the requests waiting on this load must hear of it.
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
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

    def close(self) -> None:
        self._executor.shutdown(wait=False)

"""Readiness checks for `/v2/health/ready`: PostgreSQL, Redis, and a live worker.

Each check has its own timeout so a dead dependency answers 503 in about a
second instead of hanging the probe. Connections are kept between probes and
rebuilt after any failure, so Turnout recovers by itself when a dependency
comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis.asyncio as aioredis
from django.conf import settings

from controlplane.database import database_conninfo
from controlplane.redis_client import redis_keys, redis_target
from dataplane.connection import async_client, parse_target
from dataplane.liveness import alive_since, beat_state

logger = logging.getLogger(__name__)


@dataclass
class CheckResult:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Readiness:
    """Holds one database and one Redis connection for health probes."""

    def __init__(self, conninfo: str | None = None, redis_url: str | None = None) -> None:
        # Both default to the configured services; tests point them elsewhere.
        self._conninfo = conninfo
        self._redis_url = redis_url
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._db_lock = asyncio.Lock()
        self._redis: aioredis.Redis | None = None

    @property
    def timeout(self) -> float:
        return float(settings.TURNOUT["HEALTH_CHECK_TIMEOUT_SECONDS"])

    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            target = parse_target(self._redis_url) if self._redis_url else redis_target()
            self._redis = async_client(target, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        return self._redis

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def check_database(self) -> CheckResult:
        async with self._db_lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._db is None or self._db.closed or self._db.broken:
                        self._db = await psycopg.AsyncConnection.connect(
                            self._conninfo or database_conninfo(),
                            connect_timeout=max(1, int(self.timeout)),
                            autocommit=True,
                        )
                    await self._db.execute("SELECT 1")
                return CheckResult(True)
            except (TimeoutError, psycopg.Error, OSError) as exc:
                await self._drop_db()
                return CheckResult(False, {"error": _describe(exc, "PostgreSQL")})

    async def _drop_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(psycopg.Error):
                await self._db.close()
            self._db = None

    async def check_redis_and_workers(self) -> tuple[CheckResult, CheckResult, CheckResult]:
        keys = redis_keys()
        try:
            async with asyncio.timeout(self.timeout):
                client = self.redis()
                await client.ping()
                pipe = client.pipeline(transaction=False)
                pipe.zcount(keys.workers(), alive_since(float(settings.TURNOUT["WORKER_TTL_SECONDS"])), "+inf")
                pipe.get(keys.beat())
                alive, beat_raw = await pipe.execute()
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            unknown = CheckResult(False, {"error": "unknown while Redis is unreachable"})
            return CheckResult(False, {"error": _describe(exc, "Redis")}), unknown, unknown
        state = beat_state(beat_raw, float(settings.TURNOUT["BEAT_TTL_SECONDS"]))
        beat = CheckResult(bool(state.pop("ok")), state)
        if alive:
            return CheckResult(True), CheckResult(True, {"alive": alive}), beat
        advice = "no worker has sent a heartbeat recently; start one with `celery -A controlplane worker`"
        return CheckResult(True), CheckResult(False, {"alive": 0, "error": advice}), beat

    async def check(self) -> tuple[bool, dict[str, Any]]:
        database, (redis_result, workers, beat) = await asyncio.gather(
            self.check_database(), self.check_redis_and_workers()
        )
        checks = {"database": database, "redis": redis_result, "workers": workers}
        report = {name: {"ok": result.ok, **result.detail} for name, result in checks.items()}
        # Shown, not required: without beat, requests are still served (canaries stop
        # advancing and rollups stop moving); taking web processes out of a load
        # balancer for it would turn a stalled control loop into an outage.
        report["beat"] = {"ok": beat.ok, "required": False, **beat.detail}
        ready = all(result.ok for result in checks.values())
        return ready, report


def _describe(exc: BaseException, what: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what} did not answer within the health-check timeout"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{what} unreachable: {text}"

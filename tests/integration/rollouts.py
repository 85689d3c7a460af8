"""Driving the in-process gateway in the rollout tests: routing keys, requests sent at once,
waiting until the gateway has the rollout's routing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

from tests.support.v2 import Gateway

T = TypeVar("T")


def run(gateway: Gateway, coroutine: Awaitable[T]) -> T:
    return gateway.client.loop.run_until_complete(coroutine)


def keyed(key: str, header: str = "x-routing-key", **extra: str) -> dict[str, str]:
    return {header: key, **extra}


def in_thread(work: Callable[[], T]) -> Callable[[], T]:
    """`work` with its own database connection, closed afterwards (as the gateway's catalog thread does)."""

    def wrapped() -> T:
        try:
            return work()
        finally:
            connection.close()

    return wrapped


def wait_for_routing(gateway: Gateway, model: str, wanted: Callable[[Any], bool], timeout: float = 5.0) -> None:
    """Until the gateway's catalog entry for `model` has routing that satisfies `wanted`
    (the change notice travels over Redis pub/sub and is read on the gateway's loop)."""

    async def poll() -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            entry = await gateway.app.catalog.get(model)
            if wanted(entry.routing if entry is not None else None):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the gateway's routing for {model} is still {entry.routing if entry else None}")
            await asyncio.sleep(0.05)

    run(gateway, poll())


def forget_figures(redis_conn: Any, model: str) -> None:
    """Drop the gateway's per-minute figures of `model`: a test reusing a model name (and so its version
    numbers) within the minute must not count an earlier test's requests."""
    for key in redis_conn.scan_iter(match=f"{settings.TURNOUT['REDIS_PREFIX']}:obs:*:{model}:*"):
        redis_conn.delete(key)

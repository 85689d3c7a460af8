"""Driving the in-process gateway in the rollout tests: routing keys, requests sent at once,
waiting until the gateway has the rollout's routing, rounds of traffic with the analysis
running until a rollout ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

from audit.models import AuditEntry
from rollouts.analysis import run_due_analyses
from rollouts.models import Rollout
from tests.support.rollout_models import body
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


FAST_STEPS = {"steps": [20, 60, 100], "step_seconds": 1, "analysis_interval_seconds": 1}
PER_ROUND = 40


@dataclass
class Sent:
    key: str
    bad_input: bool
    status: int
    arm: str | None
    version: str | None
    error: str


def drive(
    gateway: Gateway,
    model: str,
    rollout: Rollout,
    bad_input: Callable[[int], bool],
    concurrency: int = PER_ROUND,
    analyse_during: bool = True,
    deadline_s: float = 90,
) -> list[Sent]:
    """Rounds of requests, `concurrency` at a time, each with a key never used before, with an analysis
    running in a thread during each round, until the rollout has ended and the gateway routes without it."""
    sent: list[Sent] = []
    counter = 0

    async def one_round() -> None:
        nonlocal counter
        await gateway.app.recorder.flush()  # the figures the analysis reads
        analysis = asyncio.get_running_loop().run_in_executor(None, in_thread(run_due_analyses))
        if not analyse_during:
            await analysis
        keys = [f"client-{counter + i}" for i in range(PER_ROUND)]
        bad = [bad_input(counter + i) for i in range(PER_ROUND)]
        counter += PER_ROUND
        answers = []
        for wave in range(0, PER_ROUND, concurrency):
            answers += await asyncio.gather(
                *(
                    gateway.ainfer(model, body(50.0 if b else 1.0), headers=keyed(k))
                    for k, b in zip(keys[wave : wave + concurrency], bad[wave : wave + concurrency], strict=True)
                )
            )
        await analysis
        for key, b, answer in zip(keys, bad, answers, strict=True):
            error = answer.json().get("error", "") if answer.status != 200 else ""
            sent.append(
                Sent(
                    key,
                    b,
                    answer.status,
                    answer.headers.get("x-turnout-arm"),
                    answer.headers.get("x-turnout-model-version"),
                    error,
                )
            )

    deadline = time.monotonic() + deadline_s
    while True:
        run(gateway, one_round())
        rollout.refresh_from_db()
        if not rollout.is_active:
            break
        assert time.monotonic() < deadline, f"still {rollout.status} at step {rollout.step}: {rollout.last_analysis}"
    wait_for_routing(gateway, model, lambda routing: routing is None)
    run(gateway, one_round())  # after the switch, too
    return sent


def audit_actions(rollout: Rollout) -> list[str]:
    entries = AuditEntry.objects.filter(object_type="rollouts.rollout", object_id=str(rollout.pk))
    return list(entries.order_by("created_at", "id").values_list("action", flat=True))

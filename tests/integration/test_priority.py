"""Priority levels with a real worker: on a model whose queue is at the low level's
cap, high-tier keys are still answered while the low tier gets 503 naming its level;
high requests run before the low ones already waiting; every request gets exactly one
answer, its own, and a shed request never reaches the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis

from accounts import services as account_services
from accounts.models import Plan, Priority
from controlplane.redis_client import redis_keys
from dataplane import scripts
from tests.support.clients import bearer
from tests.support.pipeline_models import build_slow
from tests.support.v2 import Gateway, tensor

pytestmark = pytest.mark.django_db(transaction=True)

DIM = 256
# Some 35-150 ms a run here: slow enough that a queue builds, quick enough for a test.
SLOW = build_slow(DIM, 8000)
MAX_QUEUE = 8  # caps: high 8, normal 6, low 4
LOWS, HIGHS = 20, 3


@pytest.fixture
def keyed(keyed_gateway_client: Any) -> Gateway:
    return Gateway(keyed_gateway_client, keyed_gateway_client.gateway)


def secret_on(user: Any, level: str) -> str:
    plan = Plan.objects.create(
        name=f"tier-{level}", requests_per_window=10_000, window_seconds=1, burst=10_000, priority=level
    )
    key, secret = account_services.create_key(
        user, name=level, model_patterns=["inf-*"], actions=["infer"], future_models=True
    )
    account_services.set_limits(key, actor=user, plan=plan)
    return secret


def body(index: int) -> dict[str, Any]:
    """A request whose answer (y = x) says which request it was."""
    features = np.full((1, DIM), float(index), dtype=np.float32)
    wanted = [{"name": "y"}]
    return {"inputs": [tensor("x", "FP32", features)], "outputs": wanted, "parameters": {"timeout": 30_000_000}}


def answered_index(response: Any) -> float:
    [output] = response.json()["outputs"]
    values = set(output["data"])
    assert len(values) == 1, values
    return float(values.pop())


def queued(client: redis.Redis, version_id: int) -> int:
    return sum(int(client.xlen(s)) for s in redis_keys().request_streams(version_id))


def added(client: redis.Redis, version_id: int) -> list[int]:
    """Entries ever appended to each level's stream, highest first."""
    return [int(client.xinfo_stream(s)["entries-added"]) for s in redis_keys().request_streams(version_id)]


def test_an_overloaded_model_answers_the_high_tier_first_and_sheds_the_low_tier(
    serve: Callable[..., Any], keyed: Gateway, viewer: Any, redis_conn: redis.Redis
) -> None:
    # One request per run: the order of the runs is the order the worker took them in.
    version = serve("inf-priority", SLOW, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=MAX_QUEUE)
    low, high = secret_on(viewer, Priority.LOW), secret_on(viewer, Priority.HIGH)
    before = added(redis_conn, version.id)
    finished: list[tuple[str, int, int, float]] = []  # (tier, request index, status, when its answer came)

    async def call(tier: str, secret: str, index: int) -> Any:
        response = await keyed.ainfer("inf-priority", body(index), headers=bearer(secret))
        finished.append((tier, index, response.status, time.monotonic()))
        return response

    async def scenario() -> tuple[list[Any], list[Any], int]:
        lows = [asyncio.ensure_future(call("low", low, i)) for i in range(LOWS)]
        for _ in range(500):  # until the low tier has filled its share of the queue
            if queued(redis_conn, version.id) >= 4:
                break
            await asyncio.sleep(0.01)
        at_arrival = queued(redis_conn, version.id)
        highs = [asyncio.ensure_future(call("high", high, 100 + i)) for i in range(HIGHS)]
        return list(await asyncio.gather(*lows)), list(await asyncio.gather(*highs)), at_arrival

    low_answers, high_answers, at_arrival = keyed.client.loop.run_until_complete(scenario())

    # The low tier filled its share (4 of 8) and the rest of it was shed at once.
    assert at_arrival == 4
    shed = [r for r in low_answers if r.status == 503]
    served = [(i, r) for i, r in enumerate(low_answers) if r.status == 200]
    assert len(shed) == LOWS - 4, [r.status for r in low_answers]
    assert len(served) == 4
    for response in shed:
        assert "priority level 'low'" in response.json()["error"]
        assert "up to 4 of the model's 8 requests" in response.json()["error"]
        assert response.headers["retry-after"] == "1"
    # The high tier is answered in full, each request with its own output.
    assert [r.status for r in high_answers] == [200] * HIGHS, [r.body for r in high_answers]
    assert [answered_index(r) for r in high_answers] == [100.0 + i for i in range(HIGHS)]
    assert all(answered_index(r) == i for i, r in served)
    # Of the four lows in the queue when the highs came, only the one already running finished first.
    last_high = max(at for tier, _, _, at in finished if tier == "high")
    low_before = [i for tier, i, status, at in finished if tier == "low" and status == 200 and at < last_high]
    assert len(low_before) <= 1, finished
    # Nothing answered twice, nothing left behind; the shed requests never reached a stream.
    assert len(finished) == LOWS + HIGHS
    after = added(redis_conn, version.id)
    assert [a - b for a, b in zip(after, before, strict=True)] == [HIGHS, 0, 4]  # high, normal, low
    streams = redis_keys().request_streams(version.id)
    assert queued(redis_conn, version.id) == 0
    assert [redis_conn.xpending(s, scripts.GROUP)["pending"] for s in streams] == [0, 0, 0]

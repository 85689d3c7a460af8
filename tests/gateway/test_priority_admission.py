"""The gateway's admission by priority level: a version's streams together hold at
most its max_queue_size; low is refused (503, naming the level and its cap) first,
then normal, while high may still fill the queue. With a key, the rate limit and
this check run in the same script. Real Redis; nothing consumes the streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from django.conf import settings
from prometheus_client import REGISTRY

from accounts import ratelimit
from accounts.ratelimit import RatePolicy
from controlplane.redis_client import redis_keys
from dataplane.priority import HIGH, LOW, NORMAL
from gateway.dispatch import Dispatcher
from gateway.protocol import ParsedInput, ParsedRequest, ProtocolError

VERSION = 424_242
MAX_QUEUE = 4  # caps: high 4, normal 3, low 2


def request() -> ParsedRequest:
    return ParsedRequest(None, [ParsedInput("x", "FP32", [1, 1], b"\0\0\0\0")], None)


def offer(levels: list[str], admission: tuple[list[str], list[Any]] | None = None) -> list[Any]:
    """Each level's enqueue in turn: the ticket, or the ProtocolError it raised."""

    async def go() -> list[Any]:
        dispatcher = Dispatcher(settings.REDIS_URL, redis_keys())
        outcomes: list[Any] = []
        try:
            for level in levels:
                try:
                    outcomes.append(await dispatcher.enqueue(VERSION, request(), 10, MAX_QUEUE, admission, level=level))
                except ProtocolError as exc:
                    outcomes.append(exc)
        finally:
            await dispatcher.close()
        return outcomes

    return asyncio.run(go())


def lengths(client: redis.Redis) -> list[int]:
    return [int(client.xlen(stream)) for stream in redis_keys().request_streams(VERSION)]


@pytest.mark.parametrize("keyed", [False, True], ids=["anonymous", "keyed"])
def test_low_is_shed_first_then_normal_while_high_fills_the_queue(redis_client: redis.Redis, keyed: bool) -> None:
    admission = None
    if keyed:
        policy = RatePolicy(limit=1000, window_seconds=1, burst=1000, daily_quota=None)
        admission = (ratelimit.redis_keys(redis_keys(), "prioKey"), ratelimit.script_args(policy, "prioKey"))

    outcomes = offer([LOW, LOW, LOW, NORMAL, NORMAL, HIGH, HIGH], admission)

    refused = [o for o in outcomes if isinstance(o, ProtocolError)]
    assert [isinstance(o, ProtocolError) for o in outcomes] == [False, False, True, False, True, False, True]
    assert [e.status for e in refused] == [503, 503, 503]
    assert "priority level 'low'" in refused[0].message
    assert "up to 2 of the model's 4 requests" in refused[0].message
    assert "priority level 'normal'" in refused[1].message
    assert "up to 3 of the model's 4" in refused[1].message
    assert refused[2].message.startswith("the model's queue is full (4 requests)")
    assert all((b"retry-after", b"1") in e.headers for e in refused)
    assert lengths(redis_client) == [1, 1, 2]  # high, normal, low: the queue holds 4
    if keyed:
        assert all(o.rate_decision is not None for o in outcomes if not isinstance(o, ProtocolError))


def test_a_full_low_level_leaves_room_for_high_and_normal(redis_client: redis.Redis) -> None:
    outcomes = offer([LOW, LOW, NORMAL, HIGH])

    assert not any(isinstance(o, ProtocolError) for o in outcomes)
    assert [o.level for o in outcomes] == [LOW, LOW, NORMAL, HIGH]
    assert lengths(redis_client) == [1, 1, 2]


def admitted_and_shed(level: str) -> tuple[float, float]:
    def value(outcome: str) -> float:
        labels = {"level": level, "outcome": outcome}
        return REGISTRY.get_sample_value("turnout_priority_requests_total", labels) or 0.0

    return value("admitted"), value("shed")


def test_admitted_and_shed_requests_are_counted_per_level(redis_client: redis.Redis) -> None:
    before = {level: admitted_and_shed(level) for level in (HIGH, NORMAL, LOW)}

    offer([LOW, LOW, LOW, NORMAL, NORMAL, HIGH, HIGH])  # the dispatcher adds its counts when it closes

    after = {level: admitted_and_shed(level) for level in (HIGH, NORMAL, LOW)}
    gained = {level: (after[level][0] - before[level][0], after[level][1] - before[level][1]) for level in after}
    assert gained == {HIGH: (1, 1), NORMAL: (1, 1), LOW: (2, 1)}

"""`ScriptBatcher`: concurrent script calls share one EVALSHA, and each still gets
its own answer, its own error, and the effects of the calls before it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import ResponseError

from gateway.coalesce import ScriptBatcher, group_script

# Adds ARGV[1] to a counter and answers {new value, the call's tag}; 'nil' answers nothing.
BODY = """
if ARGV[2] == 'nil' then return nil end
return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2]}
"""
PRELUDE = "-- no prelude"


@pytest.fixture
def key(redis_client: redis.Redis) -> str:
    """A key under this run's prefix, which `redis_client` removes before and after."""
    return f"{settings.TURNOUT['REDIS_PREFIX']}:coalesce"


def on_evalsha(batcher: ScriptBatcher, replacement: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Send the batcher's EVALSHAs through `replacement(sha, numkeys, *keys_and_args)` (they go on
    its own connection, dataplane/link.py); the original sender, for the replacement to call."""
    link = batcher._link
    assert link is not None
    call = link.call

    async def routed(*command: Any) -> Any:
        if command[0] == "EVALSHA":
            return await replacement(*command[1:])
        return await call(*command)

    async def original(*args: Any) -> Any:
        return await call("EVALSHA", *args)

    link.call = routed  # type: ignore[method-assign]
    return original


def run(calls: list[tuple[list[Any], list[Any]]], sha: str | None = None) -> tuple[list[Any], int]:
    """The calls made at once through one batcher; their outcomes and how many EVALSHAs were sent."""

    async def go() -> tuple[list[Any], int]:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        batcher = ScriptBatcher(client, BODY, prelude=PRELUDE)
        if sha is not None:
            batcher._sha = sha  # as if Redis had restarted and lost the script
        sent = 0

        async def counting(*args: Any) -> Any:
            nonlocal sent
            sent += 1
            return await evalsha(*args)

        evalsha = on_evalsha(batcher, counting)
        try:
            outcomes = await asyncio.gather(*(batcher(k, a) for k, a in calls), return_exceptions=True)
        finally:
            await client.aclose()
        return list(outcomes), sent

    return asyncio.run(go())


def test_concurrent_calls_share_one_command_and_see_each_others_effects(key: str, redis_client: redis.Redis) -> None:
    redis_client.script_load(group_script(BODY, PRELUDE))  # as after the first call of a process

    outcomes, sent = run([([key], [1, f"call-{i}"]) for i in range(100)])

    assert outcomes == [[i + 1, f"call-{i}".encode()] for i in range(100)]
    assert sent == 1


def test_an_error_in_one_call_is_that_calls_alone(key: str, redis_client: redis.Redis) -> None:
    text = f"{key}:text"
    redis_client.set(text, "not a number")

    outcomes, _ = run([([key], [1, "a"]), ([text], [1, "b"]), ([key], [1, "c"]), ([key], [1, "nil"])])

    assert outcomes[0] == [1, b"a"]
    assert isinstance(outcomes[1], ResponseError)
    assert "not an integer" in str(outcomes[1])
    assert outcomes[2] == [2, b"c"]
    assert outcomes[3] is None
    assert redis_client.get(text) == b"not a number"


def test_a_script_redis_no_longer_has_is_loaded_again(key: str) -> None:
    outcomes, sent = run([([key], [5, "x"])], sha="0" * 40)

    assert outcomes == [[5, b"x"]]
    assert sent == 2  # the refused one, then the same group again


def test_an_answer_that_does_not_fit_the_group_fails_every_call_rather_than_leaving_one_waiting(key: str) -> None:
    async def go() -> list[Any]:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        batcher = ScriptBatcher(client, BODY, prelude=PRELUDE)

        async def short(*args: Any) -> Any:
            return [[1, b"only one"]]

        on_evalsha(batcher, short)
        try:
            return list(await asyncio.gather(*(batcher([key], [1, "x"]) for _ in range(3)), return_exceptions=True))
        finally:
            await client.aclose()

    outcomes = asyncio.run(asyncio.wait_for(go(), timeout=5))

    # The three calls went as one group, and the one answer cannot be matched to them.
    assert [type(outcome) for outcome in outcomes] == [redis.RedisError] * 3


def test_an_unexpected_error_answers_every_call_of_the_group_and_the_next_group_runs(
    key: str, redis_client: redis.Redis
) -> None:
    """Only Redis's own errors were caught: anything else left the group's callers waiting forever."""

    async def go() -> tuple[list[Any], Any]:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        batcher = ScriptBatcher(client, BODY, prelude=PRELUDE)
        calls = 0

        async def failing_once(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise TypeError("an argument redis-py cannot encode")
            return await evalsha(*args)

        evalsha = on_evalsha(batcher, failing_once)
        try:
            first = await asyncio.wait_for(
                asyncio.gather(*(batcher([key], [1, f"call-{i}"]) for i in range(3)), return_exceptions=True), 5
            )
            after = await asyncio.wait_for(batcher([key], [1, "after"]), 5)
        finally:
            await client.aclose()
        return list(first), after

    first, after = asyncio.run(go())

    assert all(isinstance(outcome, aioredis.RedisError) for outcome in first)
    assert "TypeError" in str(first[0])
    assert after == [1, b"after"]

"""The response cache's key (`digest`) and its store (`ResponseCache`) against the real Redis:
what makes two requests the same question, TTLs, the memory cap, oversize answers, and
concurrent stores keeping the total exact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings

from accounts import ratelimit
from accounts.ratelimit import RatePolicy
from controlplane.redis_client import redis_keys
from dataplane.wire import WireReply
from gateway.protocol import parse_request
from gateway.response_cache import ResponseCache, answer_bytes, digest

T = TypeVar("T")
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}, {"name": "k", "datatype": "INT64", "shape": [-1]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}, {"name": "z", "datatype": "FP32", "shape": [-1]}],
    "batch_dim": True,
}
X = [0.1, 0.2, 0.3, 0.4]


def json_request(x: list[float] = X, k: int = 7, outputs: list[str] | None = None, **extra: Any) -> Any:
    payload: dict[str, Any] = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x},
            {"name": "k", "datatype": "INT64", "shape": [1], "data": [k]},
        ],
        **extra,
    }
    if outputs is not None:
        payload["outputs"] = [{"name": name} for name in outputs]
    return parse_request(orjson.dumps(payload), None, SIGNATURE, 64)


def binary_request(x: list[float] = X, k: int = 7) -> Any:
    """The same tensors as json_request, as the binary extension sends them, inputs in the other order."""
    kb, xb = np.array([k], dtype="<i8").tobytes(), np.array([X], dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "id": "another-id",
            "inputs": [
                {"name": "k", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": len(kb)}},
                {"name": "x", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": len(xb)}},
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return parse_request(header + kb + xb, len(header), SIGNATURE, 64)


def reply(size: int = 2, value: float = 1.0) -> WireReply:
    return WireReply(
        "r",
        outputs=[("y", "FP32", np.full((1, size), value, dtype=np.float32))],
        batch_size=5,
        queue_ms=3.0,
        compute_ms=4.0,
        worker="w1",
    )


def within_cache(test: Callable[[ResponseCache], Awaitable[T]], max_bytes: int = 10**6, max_entry: int = 10**5) -> T:
    async def go() -> T:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            return await test(ResponseCache(client, redis_keys(), max_bytes, max_entry))
        finally:
            await client.aclose()

    return asyncio.run(go())


def held_bytes(redis_client: redis.Redis) -> tuple[int, int]:
    """(the store's counter, the sum of the stored values' sizes that still exist)."""
    keys = redis_keys()
    total = int(redis_client.get(keys.cache_bytes()) or 0)
    real = sum(redis_client.strlen(member) for member in redis_client.zrange(keys.cache_index(), 0, -1))
    return total, real


# --- the key ---------------------------------------------------------------------------------------------------------
def test_different_input_values_have_different_digests() -> None:
    assert digest(json_request()) != digest(json_request(x=[0.1, 0.2, 0.3, 0.5]))
    assert digest(json_request()) != digest(json_request(k=8))


def test_requested_outputs_are_part_of_the_key_in_any_order() -> None:
    everything = digest(json_request())
    assert digest(json_request(outputs=["y"])) != everything
    assert digest(json_request(outputs=["y"])) != digest(json_request(outputs=["z"]))
    assert digest(json_request(outputs=["y", "z"])) == digest(json_request(outputs=["z", "y"]))
    assert digest(json_request(outputs=["y", "z"])) != everything  # all, by name, is not "None"


def test_json_and_binary_requests_of_the_same_tensors_share_a_key() -> None:
    # Request id, binary output flags and input order change how an answer is written, not which it is.
    assert digest(json_request(id="one")) == digest(binary_request())


def test_shape_and_datatype_count_even_when_the_bytes_are_equal() -> None:
    signature = {
        "inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, -1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        "batch_dim": True,
    }

    def of(shape: list[int]) -> str:
        body = {"inputs": [{"name": "x", "datatype": "UINT8", "shape": shape, "data": [1, 2, 3, 4]}]}
        return digest(parse_request(orjson.dumps(body), None, signature, 64))

    assert of([1, 4]) != of([2, 2])


# --- the store -------------------------------------------------------------------------------------------------------
def test_a_stored_answer_comes_back_without_timings(redis_client: redis.Redis) -> None:
    async def test(cache: ResponseCache) -> tuple[bool, WireReply | None, WireReply | None]:
        key = cache.keys.response_cache(1, "d1")
        missing = await cache.get(key)
        stored = await cache.put(key, reply(), 60)
        return stored, missing, await cache.get(key)

    stored, missing, found = within_cache(test)
    assert stored
    assert missing is None
    assert found is not None
    name, datatype, array = found.outputs[0]
    assert (name, datatype, array.tolist()) == ("y", "FP32", [[1.0, 1.0]])
    assert (found.batch_size, found.queue_ms, found.compute_ms, found.worker) == (0, 0.0, 0.0, "")
    key = redis_keys().response_cache(1, "d1")
    assert 59_000 < redis_client.pttl(key) <= 60_000
    assert held_bytes(redis_client) == (redis_client.strlen(key), redis_client.strlen(key))


def test_an_answer_is_gone_after_its_ttl_and_its_size_is_forgotten(redis_client: redis.Redis) -> None:
    keys = redis_keys()

    async def test(cache: ResponseCache) -> WireReply | None:
        await cache.put(keys.response_cache(1, "short"), reply(), 0.2)
        await asyncio.sleep(0.3)
        await cache.put(keys.response_cache(1, "long"), reply(), 60)
        return await cache.get(keys.response_cache(1, "short"))

    assert within_cache(test) is None
    assert redis_client.zrange(keys.cache_index(), 0, -1) == [keys.response_cache(1, "long").encode()]
    assert held_bytes(redis_client) == (redis_client.strlen(keys.response_cache(1, "long")),) * 2


def test_over_the_cap_the_soonest_expiring_answers_are_evicted(redis_client: redis.Redis) -> None:
    keys = redis_keys()
    size = len(answer_bytes(reply(100)))

    async def test(cache: ResponseCache) -> list[bool]:
        # TTLs 10..14 s stored in reverse; the cap holds three.
        for i in (4, 3, 2, 1, 0):
            await cache.put(keys.response_cache(1, f"e{i}"), reply(100), 10 + i)
        return [await cache.get(keys.response_cache(1, f"e{i}")) is not None for i in range(5)]

    present = within_cache(test, max_bytes=3 * size + size // 2)
    assert present == [False, False, True, True, True]
    total, real = held_bytes(redis_client)
    assert total == real == 3 * size
    assert redis_client.hlen(keys.cache_sizes()) == 3


def test_an_answer_over_the_entry_limit_is_not_stored(redis_client: redis.Redis) -> None:
    keys = redis_keys()

    async def test(cache: ResponseCache) -> tuple[bool, bool]:
        big = await cache.put(keys.response_cache(1, "big"), reply(1000), 60)
        small = await cache.put(keys.response_cache(1, "small"), reply(2), 60)
        return big, small

    assert within_cache(test, max_entry=1000) == (False, True)
    assert not redis_client.exists(keys.response_cache(1, "big"))
    assert redis_client.exists(keys.response_cache(1, "small"))


def test_storing_the_same_key_again_counts_its_size_once(redis_client: redis.Redis) -> None:
    keys = redis_keys()

    async def test(cache: ResponseCache) -> None:
        for _ in range(3):
            await cache.put(keys.response_cache(1, "same"), reply(50), 60)

    within_cache(test)
    assert held_bytes(redis_client) == (redis_client.strlen(keys.response_cache(1, "same")),) * 2


def test_concurrent_stores_keep_the_total_exact_and_under_the_cap(redis_client: redis.Redis) -> None:
    keys = redis_keys()
    size = len(answer_bytes(reply(64)))
    cap = 20 * size

    async def test(cache: ResponseCache) -> None:
        await asyncio.gather(
            *(cache.put(keys.response_cache(i % 3, f"c{i % 50}"), reply(64, i), 30 + i % 7) for i in range(300))
        )

    within_cache(test, max_bytes=cap)
    total, real = held_bytes(redis_client)
    assert total == real
    assert cap - size < total <= cap
    assert redis_client.hlen(keys.cache_sizes()) == redis_client.zcard(keys.cache_index()) == total // size


def test_a_lost_counter_is_rebuilt_from_the_sizes(redis_client: redis.Redis) -> None:
    keys = redis_keys()

    async def test(cache: ResponseCache) -> None:
        await cache.put(keys.response_cache(1, "a"), reply(10), 60)
        redis_client.delete(keys.cache_bytes())
        await cache.put(keys.response_cache(1, "b"), reply(10), 60)

    within_cache(test)
    assert held_bytes(redis_client)[0] == held_bytes(redis_client)[1] == 2 * len(answer_bytes(reply(10)))


def test_redis_unreachable_is_a_miss_and_a_skipped_store() -> None:
    async def go() -> tuple[Any, bool]:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        try:
            cache = ResponseCache(client, redis_keys(), 10**6, 10**5)
            return await cache.lookup("k", None), await cache.put("k", reply(), 60)
        finally:
            await client.aclose()

    assert asyncio.run(go()) == ((None, None), False)


def test_a_hit_counts_against_the_key_rate_limit_and_a_miss_does_not(redis_client: redis.Redis) -> None:
    keys = redis_keys()
    policy = RatePolicy(limit=2, window_seconds=60, burst=2, daily_quota=None)
    admission = (ratelimit.redis_keys(keys, "kid"), ratelimit.script_args(policy, "kid"))

    async def test(cache: ResponseCache) -> list[tuple[bool, Any]]:
        outcomes = [await cache.lookup(keys.response_cache(1, "absent"), admission)]
        await cache.put(keys.response_cache(1, "here"), reply(), 60)
        for _ in range(3):
            outcomes.append(await cache.lookup(keys.response_cache(1, "here"), admission))
        return [(found is not None, decision) for found, decision in outcomes]

    outcomes = within_cache(test)
    assert outcomes[0] == (False, None)  # a miss: the enqueue's admission will count it
    assert [found for found, _ in outcomes[1:]] == [True, True, False]
    assert [ratelimit.decision(d).allowed for _, d in outcomes[1:]] == [True, True, False]
    assert redis_client.exists(keys.rate_state("kid"))


@pytest.mark.parametrize("garbage", [b"x", b"\x09\x00\x00\x00not json!", b"\x02\x00\x00\x00{}"])
def test_an_undecodable_stored_value_is_a_miss(redis_client: redis.Redis, garbage: bytes) -> None:
    key = redis_keys().response_cache(1, "bad")
    redis_client.set(key, garbage, px=60_000)

    async def test(cache: ResponseCache) -> Any:
        return await cache.lookup(key)

    assert within_cache(test) == (None, None)
    assert redis_client.get(key) == garbage  # left to expire; the next miss stores over it

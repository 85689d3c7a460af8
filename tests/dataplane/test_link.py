"""A hot path's own connection (dataplane/link.py): answers in order, Redis's error replies
raised with the connection left in step, a connection Redis closed replaced and the exchange
sent again, a Redis that stays away raised, a script loaded again after Redis lost it. Real
Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import ResponseError

from dataplane.link import Link, async_link_for, link_for


@pytest.fixture
def key(redis_client: redis.Redis) -> str:
    """A key under this run's prefix, which `redis_client` removes before and after."""
    return f"{settings.TURNOUT['REDIS_PREFIX']}:link"


@pytest.fixture
def link() -> Iterator[Link]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    link = link_for(client)
    assert link is not None
    yield link
    link.close()
    client.close()


def test_a_pipeline_answers_in_order_on_one_connection(link: Link, key: str, redis_client: redis.Redis) -> None:
    answers = link.pipeline([("RPUSH", key, b"a"), ("RPUSH", key, b"b"), ("EXPIRE", key, 60), ("LLEN", key)])

    assert answers == [1, 2, 1, 2]
    assert redis_client.lrange(key, 0, -1) == [b"a", b"b"]
    assert 0 < int(redis_client.ttl(key)) <= 60
    assert link.pipeline([]) == []


def test_an_error_reply_is_raised_after_every_answer_is_read(link: Link, key: str, redis_client: redis.Redis) -> None:
    redis_client.set(key, "a string")

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        link.pipeline([("GET", key), ("RPUSH", key, b"x"), ("SET", f"{key}:after", "1")])

    assert redis_client.get(f"{key}:after") == b"1"  # the commands after the error ran
    assert link.call("GET", key) == b"a string"  # and the connection is still in step
    redis_client.delete(f"{key}:after")


def test_a_connection_redis_closed_is_replaced_and_the_command_sent_again(
    link: Link, key: str, redis_client: redis.Redis
) -> None:
    """As after a Redis restart: the kept connection fails on first use, the exchange goes
    once more on a new one (what redis-py's client does for these errors)."""
    first = link.call("CLIENT", "ID")
    assert redis_client.client_kill_filter(_id=first) == 1  # only the link's connection

    second = link.call("CLIENT", "ID")
    assert second != first
    assert redis_client.client_kill_filter(_id=second) == 1
    assert link.pipeline([("RPUSH", key, b"a"), ("LLEN", key)]) == [1, 1]  # sent once, on the new one


def test_a_redis_that_stays_away_fails_the_call(redis_client: redis.Redis) -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    link = link_for(client)
    assert link is not None
    with pytest.raises(redis.ConnectionError):
        link.call("PING")
    link.close()


def test_a_script_redis_lost_is_loaded_again(link: Link, key: str, redis_client: redis.Redis) -> None:
    source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    sha = redis_client.script_load(source)
    assert link.evalsha(sha, source, [key], [2]) == 2
    redis_client.script_flush()

    assert link.evalsha(sha, source, [key], [3]) == 5


def test_the_asyncio_link_answers_raises_reconnects_and_reloads(key: str, redis_client: redis.Redis) -> None:
    source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    sha = redis_client.script_load(source)

    async def go() -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        link = async_link_for(client)
        assert link is not None
        try:
            assert await link.call("RPUSH", f"{key}:list", b"a") == 1
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await link.call("GET", f"{key}:list")
            assert await link.call("LPOP", f"{key}:list") == b"a"  # still in step
            first = await link.call("CLIENT", "ID")
            assert redis_client.client_kill_filter(_id=first) == 1
            assert await link.call("CLIENT", "ID") != first  # replaced, and the command sent again
            assert await link.evalsha(sha, source, [key], [2]) == 2
            redis_client.script_flush()
            assert await link.evalsha(sha, source, [key], [3]) == 5
        finally:
            await link.close()
            await client.aclose()

    asyncio.run(go())

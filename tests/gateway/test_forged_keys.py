"""Forged keys: well-formed keys (right shape, right checksum) with made-up public ids.

Each one the gateway has not seen costs a database look-up, so an anonymous client
could drive PostgreSQL with them. Two bounds: unknown ids are remembered for a while
(a bounded negative cache), and each client address may cause only so many look-ups
of keys the gateway does not know (`TURNOUT_UNKNOWN_KEY_LOOKUPS_PER_MINUTE`); past
that it answers 429 with Retry-After, without a look-up. Keys already known keep
working for everyone, and other addresses are not affected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from accounts import keyformat, services
from gateway.auth import LOOKUP_THREADS, KeyAuth
from tests.conftest import _gateway_client
from tests.support.asgi import AsgiClient, AsgiResponse
from tests.support.processes import wait_for
from tests.support.v2 import exchange

# The gateway reads keys on its own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/v2/models/nobody-here"  # authenticated before the model is looked up: 404 for a good key
LIMIT = 20


def forged() -> str:
    body = f"tk_live_{keyformat.new_public_id()}_{'A' * keyformat.SECRET_LENGTH}"
    return body + keyformat.checksum(body)


@pytest.fixture
def client(settings: Any) -> Iterator[AsgiClient]:
    settings.TURNOUT = {**settings.TURNOUT, "UNKNOWN_KEY_LOOKUPS_PER_MINUTE": LIMIT}
    yield from _gateway_client(require_key=True)


def key_queries(auth: KeyAuth) -> list[str]:
    """Every SQL statement the gateway's key look-ups run from now on (counted in its
    look-up threads, on their own connections)."""
    queries: list[str] = []
    barrier = threading.Barrier(LOOKUP_THREADS)

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    def install() -> None:
        barrier.wait(timeout=5)  # every thread of the pool holds one of these at once
        connection.execute_wrappers.append(count)

    for future in [auth._executor.submit(install) for _ in range(LOOKUP_THREADS)]:
        future.result()
    return queries


async def get(client: AsgiClient, secret: str, address: str) -> AsgiResponse:
    app = _FromAddress(client.app, (address, 40000))
    response, _ = await exchange(app, "GET", PATH, b"", {"authorization": f"Bearer {secret}"})
    return response


class _FromAddress:
    """The application, seen from another client address (as a server fills scope["client"])."""

    def __init__(self, app: Any, address: tuple[str, int]) -> None:
        self.app, self.address = app, address

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app({**scope, "client": self.address}, receive, send)


def burst(client: AsgiClient, secrets: list[str], address: str = "127.0.0.1") -> list[AsgiResponse]:
    async def all_at_once() -> list[AsgiResponse]:
        return await asyncio.gather(*[get(client, secret, address) for secret in secrets])

    return client.loop.run_until_complete(all_at_once())


def test_a_burst_of_1000_forged_keys_costs_a_bounded_number_of_queries(client: AsgiClient, viewer: Any) -> None:
    _, known = services.create_key(viewer, name="known", model_patterns=["*"], actions=["read"])
    _, elsewhere = services.create_key(viewer, name="elsewhere", model_patterns=["*"], actions=["read"])
    auth = client.gateway.keys  # type: ignore[attr-defined]
    # Known to the gateway before the attack (it caches records once it hears change notices).
    assert wait_for(lambda: burst(client, [known])[0].status == 404 and client.gateway.notices.connected, 5)  # type: ignore[attr-defined]
    assert burst(client, [known])[0].status == 404
    queries = key_queries(auth)

    started = time.monotonic()
    answers = burst(client, [forged() for _ in range(1000)])
    took = time.monotonic() - started

    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) == {401, 429}, statuses
    # At most the budget of look-ups, plus what refilled while the burst ran, one query each.
    bound = LIMIT + int(took * LIMIT / 60) + 1
    assert statuses[401] <= bound
    assert len(queries) <= bound, (len(queries), took)
    refused = next(answer for answer in answers if answer.status == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "unknown API keys" in refused.json()["error"]
    # The limited address's known key still works, without a look-up...
    before = len(queries)
    assert burst(client, [known])[0].status == 404
    # ...and another address's new key is looked up and works.
    assert burst(client, [elsewhere], address="192.0.2.7")[0].status == 404
    assert len(queries) > before


def test_a_forged_key_sent_again_is_answered_from_the_negative_cache(client: AsgiClient) -> None:
    auth = client.gateway.keys  # type: ignore[attr-defined]
    queries = key_queries(auth)
    same = forged()

    statuses = [answer.status for answer in burst(client, [same] * 50) + burst(client, [same] * 50)]

    assert statuses == [401] * 100
    assert len(queries) == 1

"""A worker answers at once any request it cannot decode, instead of dropping it.

Entries are written straight onto a served version's stream, as a buggy or older
gateway (or anyone with access to Redis) could write them. Whenever the entry's
reply address can be read, the worker replies 400 at once and acknowledges and
deletes the entry; when it cannot, it only acknowledges and deletes it. Either way
nothing is left pending for another worker to take over again and again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.scripts import GROUP
from dataplane.wire import WireReply, decode_reply, encode_request
from registry.demo_models import build_mlp

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def stream(serve: Callable[..., Any], redis_conn: redis.Redis) -> str:
    version = serve("inf-undecodable", build_mlp(4, [8], 2))
    return redis_keys().request_stream(version.id, NORMAL)


def entry(reply_to: str, shape: list[int], raw: bytes, datatype: str = "FP32") -> dict[bytes, bytes]:
    deadline_ms = int((time.time() + 30) * 1000)
    return encode_request("bad-1", reply_to, deadline_ms, time.time() * 1000, [("input", datatype, shape, raw)], None)


def reply_within(redis_conn: redis.Redis, reply_to: str, seconds: float) -> WireReply | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        blob = redis_conn.lpop(reply_to)
        if blob is not None:
            return decode_reply(blob)  # type: ignore[arg-type]
        time.sleep(0.01)
    return None


def settled(redis_conn: redis.Redis, stream: str) -> bool:
    """Nothing left on the stream: acknowledged and deleted."""
    return redis_conn.xlen(stream) == 0 and redis_conn.xpending(stream, GROUP)["pending"] == 0


@pytest.mark.parametrize(
    ("fields_of", "phrase"),
    [
        pytest.param(lambda to: entry(to, [1, 0, 2**62], b""), "too big", id="overflowing-shape"),
        pytest.param(lambda to: entry(to, [1, 4], b"\0" * 15), "needs 16", id="short-tensor"),
        pytest.param(lambda to: entry(to, [1, 4], b"\0" * 16, "FP99"), "FP99", id="unknown-datatype"),
        pytest.param(lambda to: entry(to, [1, "4"], b"\0" * 16), "shape", id="shape-of-strings"),
        pytest.param(
            lambda to: {b"h": orjson.dumps({"i": "bad-1", "r": to, "d": 2**50, "e": 0, "o": None, "t": []})},
            "no input",
            id="no-tensors",
        ),
        pytest.param(
            lambda to: {**entry(to, [1, 4], b"\0" * 16), b"h": orjson.dumps({"i": "bad-1", "r": to, "t": "x"})},
            "header",
            id="header-fields-missing",
        ),
    ],
)
def test_an_entry_the_worker_cannot_decode_is_answered_400_at_once(
    stream: str, redis_conn: redis.Redis, fields_of: Callable[[str], dict[bytes, bytes]], phrase: str
) -> None:
    reply_to = redis_keys().reply_list(f"test-{uuid.uuid4().hex}")
    sent = time.monotonic()

    redis_conn.xadd(stream, fields_of(reply_to))  # type: ignore[arg-type]

    reply = reply_within(redis_conn, reply_to, seconds=5)
    assert reply is not None, "no reply: the worker dropped the entry"
    assert time.monotonic() - sent < 2
    assert (reply.request_id, reply.status) == ("bad-1", 400)
    assert "could not decode" in reply.error
    assert phrase in reply.error
    assert settled(redis_conn, stream)


def test_an_entry_without_a_readable_reply_address_is_acknowledged_and_deleted(
    stream: str, redis_conn: redis.Redis
) -> None:
    redis_conn.xadd(stream, {b"h": b"{not json", b"0": b""})

    deadline = time.monotonic() + 3
    while not settled(redis_conn, stream) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert settled(redis_conn, stream)

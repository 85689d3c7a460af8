"""The gateway's reply listener (gateway/dispatch.py) delivers every well-formed reply whatever
else its reply list holds: a stray or truncated blob is dropped, a reply that names a waiting
request but cannot be decoded answers that request 500, and the listener goes on. Real Redis;
the replies are pushed by hand, as a worker would."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import redis
from django.conf import settings

from controlplane.redis_client import redis_keys
from dataplane.wire import WireReply, encode_reply
from gateway.dispatch import Dispatcher
from gateway.protocol import ParsedInput, ParsedRequest, ProtocolError

VERSION = 434_343


def request() -> ParsedRequest:
    return ParsedRequest(None, [ParsedInput("x", "FP32", [1, 1], b"\0\0\0\0")], None)


def framed(header: object) -> bytes:
    """A reply's framing (the header's length, then the header) around any JSON header."""
    raw = orjson.dumps(header)
    return len(raw).to_bytes(4, "little") + raw


def test_malformed_replies_are_dropped_and_the_others_still_delivered(redis_client: redis.Redis) -> None:
    async def go() -> tuple[WireReply, ProtocolError, bool]:
        dispatcher = Dispatcher(settings.REDIS_URL, redis_keys())
        try:
            good = await dispatcher.enqueue(VERSION, request(), 10, 100)
            broken = await dispatcher.enqueue(VERSION, request(), 10, 100)
            answer = WireReply(good.request_key, outputs=[("y", "FP32", np.array([[1.5]], dtype=np.float32))])
            redis_client.rpush(
                dispatcher.reply_key,
                b"\x01",  # shorter than the framing
                b"\xff\xff\xff\xff{}",  # a length past the end
                framed(["not", "an", "object"]),  # no request id
                framed({"i": broken.request_key, "s": 200, "o": 5}),  # its outputs are not a list
                encode_reply(answer),
            )
            delivered = await dispatcher.wait(good)
            with pytest.raises(ProtocolError) as caught:
                await dispatcher.wait(broken)
            listening = dispatcher._listener is not None and not dispatcher._listener.done()
            return delivered, caught.value, listening
        finally:
            await dispatcher.close()

    delivered, failure, listening = asyncio.run(go())

    assert delivered.status == 200
    (name, datatype, array) = delivered.outputs[0]
    assert (name, datatype, array.tolist()) == ("y", "FP32", [[1.5]])
    assert failure.status == 500
    assert "malformed reply from the worker" in str(failure)
    assert listening, "the listener stopped on a malformed reply"


def test_the_listener_goes_on_after_an_unexpected_error(redis_client: redis.Redis) -> None:
    async def go() -> tuple[WireReply, bool]:
        dispatcher = Dispatcher(settings.REDIS_URL, redis_keys())
        deliver = dispatcher._deliver
        failed = asyncio.Event()

        def failing_once(blobs: list[object]) -> None:
            if not failed.is_set():
                failed.set()
                raise RuntimeError("a bug in delivery")
            deliver(blobs)  # type: ignore[arg-type]

        dispatcher._deliver = failing_once  # type: ignore[method-assign]
        try:
            lost = await dispatcher.enqueue(VERSION, request(), 10, 100)
            later = await dispatcher.enqueue(VERSION, request(), 10, 100)  # no enqueue after the error
            redis_client.rpush(dispatcher.reply_key, encode_reply(WireReply(lost.request_key)))
            await asyncio.wait_for(failed.wait(), 5)
            redis_client.rpush(dispatcher.reply_key, encode_reply(WireReply(later.request_key)))
            delivered = await asyncio.wait_for(dispatcher.wait(later), 5)
            return delivered, dispatcher._listener is not None and not dispatcher._listener.done()
        finally:
            await dispatcher.close()

    delivered, listening = asyncio.run(go())

    assert (delivered.status, listening) == (200, True)

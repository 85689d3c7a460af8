"""The gateway's HTTP layer: ASGI types, reading the request body and headers, sending
answers (no framework on the hot path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from gateway.protocol import ProtocolError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    raw_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, status, orjson.dumps(payload), JSON, headers)


async def send_error(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Errors in the Open Inference Protocol shape: `{"error": "..."}`."""
    await send_json(send, status, {"error": message}, headers)


def method_not_allowed(method: str, path: str, allowed: tuple[str, ...]) -> ProtocolError:
    return ProtocolError(405, f"method {method} not allowed on {path}", [(b"allow", ", ".join(allowed).encode())])


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing anything over `limit` bytes (413) before reading it."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise ProtocolError(400, "Content-Length is not a number") from None
            if declared > limit:
                raise ProtocolError(413, f"the body is {declared} bytes, over the limit of {limit} bytes")
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None

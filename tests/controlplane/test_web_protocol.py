"""The web protocol writes an answer's head and body in one write, and HTTP stays HTTP:
HEAD, streamed bodies, `Expect: 100-continue`, `Connection: close`, keep-alive."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl

from controlplane.web_protocol import CoalescingCycle


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def cycle_for(transport: FakeTransport, method: str = "GET", keep_alive: bool = True) -> CoalescingCycle:
    scope = {"type": "http", "method": method, "path": "/", "headers": [], "http_version": "1.1"}
    return CoalescingCycle(
        scope=scope,
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


def start(length: int) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(length).encode())]}


def test_head_and_body_leave_in_one_write() -> None:
    transport = FakeTransport()
    cycle = cycle_for(transport)

    async def answer() -> None:
        await cycle.send(start(5))
        assert transport.writes == []  # held for the body
        await cycle.send({"type": "http.response.body", "body": b"hello"})

    asyncio.run(answer())

    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nhello")
    assert cycle.transport is transport


def test_a_head_answer_still_writes_its_head_and_a_closed_connection_gets_it_before_closing() -> None:
    transport = FakeTransport()
    cycle = cycle_for(transport, method="HEAD", keep_alive=False)

    async def answer() -> None:
        await cycle.send(start(5))
        await cycle.send({"type": "http.response.body", "body": b""})

    asyncio.run(answer())

    [head] = transport.writes
    assert b"\r\ncontent-length: 5\r\n" in head
    assert head.endswith(b"\r\n\r\n")
    assert transport.closed


def test_a_streamed_body_sends_its_head_with_the_first_chunk() -> None:
    transport = FakeTransport()
    cycle = cycle_for(transport)

    async def answer() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
        await cycle.send({"type": "http.response.body", "body": b"one", "more_body": True})
        await cycle.send({"type": "http.response.body", "body": b"two"})

    asyncio.run(answer())

    assert len(transport.writes) == 2
    assert b"transfer-encoding: chunked" in transport.writes[0]
    assert transport.writes[0].endswith(b"3\r\none\r\n")
    assert transport.writes[1] == b"3\r\ntwo\r\n0\r\n\r\n"


# --- a real server ----------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="controlplane.web_protocol:CoalescingHttpToolsProtocol",
        lifespan="off",
        log_level="warning",
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        threading.Event().wait(0.02)
    yield port
    running.should_exit = True
    thread.join(10)


def test_requests_on_one_kept_alive_connection(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    for n in range(3):
        connection.request("POST", "/", body=f"body{n}".encode())
        response = connection.getresponse()
        assert (response.status, response.read()) == (201, f"echo:body{n}".encode())
    connection.request("HEAD", "/")
    response = connection.getresponse()
    assert (response.status, response.getheader("content-length"), response.read()) == (201, "5", b"")
    connection.request("GET", "/stream")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"abc")
    connection.close()


def test_expect_100_continue_and_connection_close(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")  # before the body is sent
        sock.sendall(b"data")
        answer = b""
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.count(b"HTTP/1.1 201 Created") == 2
    assert b"echo:data" in answer
    assert answer.endswith(b"echo:")  # the second answer, then the server closed the connection

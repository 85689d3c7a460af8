"""Over-size bodies on the Django side are refused while they arrive, by a real web process.

Each test sends a large body from a thread over a plain socket, declared or chunked,
while the test reads the answer: 413 must come before the client has finished sending,
and the web process must have read little of the body and written none of it to disk
(its /proc I/O counters: before this was fixed, four anonymous 200 MiB bodies were read
in full and spooled to temporary files before anything refused them).

Personas, told apart by headers alone (the limits come before any authentication):
anonymous (no session cookie, no API key header), a script (an API key header), and a
browser (a session cookie).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.processes import WebProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MiB = 1024**2
BODY = 64 * MiB  # what each client tries to send
CHUNK = 64 * 1024
ARTIFACT_LIMIT = 4 * MiB  # TURNOUT_MAX_ARTIFACT_BYTES for the web process


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, django_db_setup: Any, django_db_blocker: Any) -> Iterator[WebProcess]:
    logs = tmp_path_factory.mktemp("web")
    spool = logs / "tmp"
    spool.mkdir()
    process = WebProcess(
        logs / "web.log",
        WEB_CONCURRENCY="1",  # one process serves (uvicorn reads it), so its counters are the server's
        TMPDIR=str(spool),
        FILE_UPLOAD_TEMP_DIR=str(spool),
        TURNOUT_MAX_ARTIFACT_BYTES=str(ARTIFACT_LIMIT),
        ARTIFACT_ROOT=str(logs / "artifacts"),
    )
    try:
        assert process.wait_ready(), process.log()
        yield process
    finally:
        process.stop()


@dataclass
class Exchange:
    size: int = 0  # the body the client meant to send
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes the client got into the socket
    finished_sending: bool = False
    read_by_server: int = 0  # growth of the web process's rchar / wchar during the exchange
    written_by_server: int = 0


def io_counters(pid: int) -> dict[str, int]:
    """rchar and wchar (bytes through read/recv and write syscalls) of a process and its children."""
    totals = {"rchar": 0, "wchar": 0}
    for process in [pid, *children(pid)]:
        for line in Path(f"/proc/{process}/io").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in totals:
                totals[name] += int(value)
    return totals


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def exchange(web: WebProcess, path: str, headers: dict[str, str], *, chunked: bool, size: int = BODY) -> Exchange:
    result = Exchange(size=size)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    before = io_counters(web.process.pid)
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=20)

    def send_body() -> None:
        piece = b"x" * CHUNK  # size is a multiple of CHUNK
        framed = b"%x\r\n%s\r\n" % (CHUNK, piece) if chunked else piece
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            while result.sent < size:
                sock.sendall(framed)
                result.sent += CHUNK
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            result.finished_sending = True
        except OSError:
            pass  # the server closed the connection: it refused the rest

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head_part, _, rest = received.partition(b"\r\n\r\n")
        lines = head_part.decode("latin-1").split("\r\n")
        result.status = int(lines[0].split(" ")[1])
        result.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(result.headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        result.body = rest[:length]
        finished_when_answered = result.finished_sending
    finally:
        sock.close()
        sender.join(20)
    after = io_counters(web.process.pid)
    result.finished_sending = finished_when_answered
    result.read_by_server = after["rchar"] - before["rchar"]
    result.written_by_server = after["wchar"] - before["wchar"]
    return result


def assert_refused_early(result: Exchange, limit: int) -> None:
    assert result.status == 413, result
    if result.size == BODY:  # a smaller body fits in the sockets' buffers at once
        assert not result.finished_sending, "the answer came only once the whole body was sent"
    assert result.read_by_server < limit + 2 * MiB, f"the server read {result.read_by_server} bytes"
    assert result.written_by_server < 256 * 1024, f"the server wrote {result.written_by_server} bytes"


def test_an_anonymous_declared_body_is_refused_before_it_is_read(web: WebProcess) -> None:
    huge = exchange(web, "/api/models/", {"Content-Type": "application/json"}, chunked=False)
    # Over the anonymous limit only: signing in would let it through.
    small = exchange(web, "/api/models/", {"Content-Type": "application/json"}, chunked=False, size=4 * CHUNK)

    assert_refused_early(huge, 0)
    assert huge.headers["content-type"] == "application/json"
    assert orjson.loads(huge.body) == {
        "detail": f"The request body is {BODY} bytes, over the limit of 1048576 bytes for a request body "
        "(TURNOUT_MAX_BODY_BYTES)."
    }
    assert_refused_early(small, 0)
    assert orjson.loads(small.body) == {
        "detail": f"The request body is {4 * CHUNK} bytes, over the limit of 65536 bytes for a request without "
        "a session or an API key (TURNOUT_MAX_ANONYMOUS_BODY_BYTES); sign in or send a key."
    }


def test_an_anonymous_chunked_body_is_refused_once_past_the_small_limit(web: WebProcess) -> None:
    result = exchange(web, "/login/", {"Content-Type": "application/x-www-form-urlencoded"}, chunked=True)

    assert_refused_early(result, 64 * 1024)
    assert b"over the limit of 65536 bytes for a request without a session or an API key" in result.body


def test_a_script_s_chunked_json_is_refused_past_the_body_limit(web: WebProcess) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer tk_live_whatever"}

    result = exchange(web, "/api/rollouts/", headers, chunked=True)

    assert_refused_early(result, MiB)
    assert orjson.loads(result.body) == {
        "detail": "The request body is over the limit of 1048576 bytes for a request body (TURNOUT_MAX_BODY_BYTES)."
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_an_upload_is_refused_past_the_artifact_limit(web: WebProcess, chunked: bool) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=xyz", "Cookie": "sessionid=not-checked-yet"}

    result = exchange(web, "/models/fraud/upload/", headers, chunked=chunked)

    assert_refused_early(result, ARTIFACT_LIMIT)
    assert f"over the limit of {ARTIFACT_LIMIT} bytes for a model file".encode() in result.body


def test_a_body_within_its_limit_reaches_django(web: WebProcess) -> None:
    status, body, _ = web.request("POST", "/api/models/", b'{"name": "x"}', {"Content-Type": "application/json"})

    assert status == 403  # Django answered: an anonymous caller may not create models
    assert orjson.loads(body) == {"detail": "Authentication credentials were not provided."}

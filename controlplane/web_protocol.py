"""uvicorn's httptools protocol, with a response's head and body written in one system call.

uvicorn writes the status line and headers when the application sends `http.response.start`
and the body when it sends `http.response.body`: two writes per answer. On loopback and on a
LAN each write also runs the receiver's TCP path and wakes it, and the profile of a web process
under load put 18 % of its CPU in these writes (docs/benchmarks.md, "Hot path"). Here the head
is held until the first body message, which goes out with it; an answer without a body write
(HEAD) gets its head written on its own, when its body message comes. The `100 Continue`
interim answer is written at once, as before.

Used through controlplane.web_worker.TurnoutUvicornWorker (gunicorn) or
`uvicorn.run(..., http="controlplane.web_protocol:CoalescingHttpToolsProtocol")` (the integration
tests' tests/support/web_server.py).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _Capture:
    """Stands for the transport while uvicorn writes a response's head: keeps the bytes."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _HeadFirst:
    """Stands for the transport until the next write, which carries the held head with it."""

    def __init__(self, cycle: CoalescingCycle, real: Any, head: bytes) -> None:
        self.cycle = cycle
        self.real = real
        self.head = head

    def write(self, data: bytes) -> None:
        self.cycle.transport = self.real
        self.real.write(self.head + data)

    def release(self) -> None:
        """Write the head alone (no body write came), and stand down."""
        self.cycle.transport = self.real
        self.real.write(self.head)

    def close(self) -> None:
        # uvicorn closes a connection that is not kept alive right after the body: the head first.
        self.release()
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CoalescingCycle(RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started and not self.disconnected:
            real = self.transport
            capture = _Capture(real)
            self.transport = capture  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            if capture.held:
                self.transport = _HeadFirst(self, real, b"".join(capture.held))  # type: ignore[assignment]
            return
        await super().send(message)
        pending = self.transport
        if isinstance(pending, _HeadFirst) and message["type"] == "http.response.body" and not self.disconnected:
            pending.release()  # HEAD, or a body uvicorn did not write: the head still goes out


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # The cycle was built by uvicorn a line earlier; only its send differs.
        cycle.__class__ = CoalescingCycle
        super()._start_asgi_task(cycle, app)

"""The Open Inference Protocol (KServe V2) gateway: a plain ASGI application.

Mounted beside Django in controlplane/asgi.py for every path under `/v2`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from controlplane.gateway.health import Readiness
from controlplane.gateway.http import Receive, Scope, Send, send_error, send_json

logger = logging.getLogger(__name__)

SERVER_NAME = "turnout"
SERVER_VERSION = "0.1.0"
# Protocol extensions this server implements; advertised by `GET /v2`.
EXTENSIONS: list[str] = []

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Gateway:
    def __init__(self, readiness: Readiness | None = None) -> None:
        self.readiness = readiness or Readiness()
        # path -> (allowed methods, handler)
        self.routes: dict[str, tuple[tuple[str, ...], Handler]] = {
            "/v2": (("GET",), self.server_metadata),
            "/v2/health/live": (("GET",), self.live),
            "/v2/health/ready": (("GET",), self.ready),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        route = self.routes.get(path)
        if route is None:
            await send_error(send, 404, f"no such endpoint: {scope['path']}")
            return
        methods, handler = route
        method = scope["method"]
        if method == "HEAD" and "GET" in methods:
            method = "GET"
        if method not in methods:
            allow = ", ".join(methods).encode()
            await send_error(send, 405, f"method {scope['method']} not allowed on {path}", [(b"allow", allow)])
            return
        await handler(scope, receive, send)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.readiness.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"live": True})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready, report = await self.readiness.check()
        if not ready:
            down = [name for name, result in report.items() if not result["ok"]]
            logger.warning("not ready: %s down", ", ".join(down))
            await send_json(send, 503, {"ready": False, "down": down, "checks": report}, [(b"retry-after", b"5")])
            return
        await send_json(send, 200, {"ready": True, "checks": report})

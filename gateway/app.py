"""The Open Inference Protocol (KServe V2) gateway over HTTP: a plain ASGI application.

Mounted beside Django in controlplane/asgi.py for every path under `/v2`.
Nothing here runs Django's request machinery; the registry is read through an
in-process catalog and requests travel to the workers over Redis streams.
The parts shared with the gRPC transport (gateway/grpc_server.py) are `GatewayCore`'s
(gateway/core.py); this module only speaks HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from gateway import http_models, triton_http
from gateway.core import GatewayCore
from gateway.http import Receive, Scope, Send, method_not_allowed, send_error, send_json
from gateway.protocol import ProtocolError

logger = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Gateway(GatewayCore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._grpc: Any = None  # the gRPC server, when TURNOUT_GRPC_IN_WEB runs it in this process
        # path -> (allowed methods, handler)
        self.routes: dict[str, tuple[tuple[str, ...], Handler]] = {
            "/v2": (("GET",), self.server_metadata_http),
            "/v2/health/live": (("GET",), self.live),
            "/v2/health/ready": (("GET",), self.ready),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        try:
            if path.startswith(("/v2/models/", "/v2/repository/")):
                self.notices.ensure_started()
                if await triton_http.handle(self, path, method, scope, receive, send):
                    return
                if path.startswith("/v2/models/"):
                    rest = path[len("/v2/models/") :]
                    await http_models.handle(self.models, rest, method, scope, receive, send)
                    return
            route = self.routes.get(path)
            if route is None:
                raise ProtocolError(404, f"no such endpoint: {scope['path']}")
            methods, handler = route
            if method == "HEAD" and "GET" in methods:
                method = "GET"
            if method not in methods:
                raise method_not_allowed(method, path, methods)
            await handler(scope, receive, send)
        except ProtocolError as exc:
            await send_error(send, exc.status, exc.message, exc.headers)
        except Exception:
            # The last line of defence: a bug must still answer in the protocol's shape.
            logger.exception("unhandled error on %s %s", method, path)
            await send_error(send, 500, "internal error; the server log has the details")

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if settings.TURNOUT["GRPC_IN_WEB"]:
                    await self._start_grpc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._grpc is not None:
                    await self._grpc.stop(5)
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start_grpc(self) -> None:
        """gRPC in this process, on this core: each web process binds the same port (SO_REUSEPORT)."""
        # Imported only when asked: grpc's core starts threads of its own once loaded.
        from gateway.grpc_server import start_server

        self.notices.ensure_started()
        self._grpc = await start_server(self, str(settings.TURNOUT["GRPC_BIND"]))

    async def server_metadata_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.server_metadata())

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"live": True})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready, report = await self.server_ready()
        if not ready:
            down = [name for name, result in report.items() if not result["ok"] and result.get("required", True)]
            logger.warning("not ready: %s down", ", ".join(down))
            await send_json(send, 503, {"ready": False, "down": down, "checks": report}, [(b"retry-after", b"5")])
            return
        await send_json(send, 200, {"ready": True, "checks": report})

"""The Open Inference Protocol (KServe V2) gateway: a plain ASGI application.

Mounted beside Django in controlplane/asgi.py for every path under `/v2`.
Nothing here runs Django's request machinery; the registry is read through an
in-process catalog and requests travel to the workers over Redis streams.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.conf import settings

from controlplane.accounts.services import keys_channel
from controlplane.gateway import models as model_routes
from controlplane.gateway.auth import KeyAuth
from controlplane.gateway.catalog import Catalog
from controlplane.gateway.dispatch import Dispatcher
from controlplane.gateway.health import Readiness
from controlplane.gateway.http import Receive, Scope, Send, send_error, send_json
from controlplane.gateway.notices import Notices
from controlplane.gateway.protocol import ProtocolError
from controlplane.gateway.routing import ShadowCopies
from controlplane.observability.recorder import Recorder
from registry.events import catalog_channel

logger = logging.getLogger(__name__)

SERVER_NAME = "turnout"
SERVER_VERSION = "0.1.0"
# Protocol extensions this server implements; advertised by `GET /v2`.
EXTENSIONS = ["binary_tensor_data"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Gateway:
    def __init__(self, readiness: Readiness | None = None) -> None:
        self.readiness = readiness or Readiness()
        prefix = settings.TURNOUT["REDIS_PREFIX"]
        self.dispatcher = Dispatcher(settings.REDIS_URL, prefix)
        self.notices = Notices(self.dispatcher.redis)
        self.catalog = Catalog()
        self.keys = KeyAuth(self.dispatcher.redis, self.notices, prefix)
        self.require_key = bool(settings.TURNOUT["REQUIRE_API_KEY"])
        self.shadows = ShadowCopies(self)
        self.recorder = Recorder(self.dispatcher.redis, prefix, enabled=bool(settings.TURNOUT["METRICS_ENABLED"]))
        self.notices.on(catalog_channel(), self.catalog.invalidate)
        self.notices.on(keys_channel(), self.keys.invalidate)
        # path -> (allowed methods, handler)
        self.routes: dict[str, tuple[tuple[str, ...], Handler]] = {
            "/v2": (("GET",), self.server_metadata),
            "/v2/health/live": (("GET",), self.live),
            "/v2/health/ready": (("GET",), self.ready),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        try:
            if path.startswith("/v2/models/"):
                self.notices.ensure_started()
                await model_routes.handle(self, path[len("/v2/models/") :], method, scope, receive, send)
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        await self.recorder.close()
        await self.notices.close()
        self.catalog.close()
        self.keys.close()
        await self.dispatcher.close()
        await self.readiness.close()

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

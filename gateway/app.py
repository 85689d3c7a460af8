"""The Open Inference Protocol (KServe V2) gateway: a plain ASGI application.

Mounted beside Django in controlplane/asgi.py for every path under `/v2`.
Nothing here runs Django's request machinery; the registry is read through an
in-process catalog and requests travel to the workers over Redis streams.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.conf import settings

from controlplane.redis_client import redis_keys, redis_target
from gateway.auth import KeyAuth
from gateway.catalog import Catalog
from gateway.dispatch import Dispatcher
from gateway.health import Readiness
from gateway.http import Receive, Scope, Send, method_not_allowed, send_error, send_json
from gateway.model_endpoints import ModelEndpoints
from gateway.notices import Notices
from gateway.protocol import ProtocolError
from gateway.shadows import ShadowCopies
from observability import tracing
from observability.recorder import Recorder

logger = logging.getLogger(__name__)

SERVER_NAME = "turnout"
SERVER_VERSION = "0.1.0"
# Protocol extensions this server implements; advertised by `GET /v2`.
EXTENSIONS = ["binary_tensor_data"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Gateway:
    def __init__(self, readiness: Readiness | None = None) -> None:
        # Here rather than at lifespan startup: a server run without lifespan events still traces.
        # (Each gunicorn worker builds its own Gateway after the fork, so the exporter's thread is its own.)
        conf = settings.TURNOUT
        tracing.configure(
            tracing.GATEWAY_SERVICE,
            enabled=bool(conf["TRACING"]),
            ratio=float(conf["TRACING_SAMPLE_RATIO"]),
            endpoint=str(conf["TRACING_ENDPOINT"]),
        )
        self.readiness = readiness or Readiness()
        keys = redis_keys()
        self.dispatcher = Dispatcher(redis_target(), keys)
        self.notices = Notices(self.dispatcher.redis)
        self.catalog = Catalog()
        self.keys = KeyAuth(self.dispatcher.redis, self.notices, keys)
        self.recorder = Recorder(self.dispatcher.redis, keys, enabled=bool(settings.TURNOUT["METRICS_ENABLED"]))
        self.shadows = ShadowCopies(self.dispatcher, self.recorder)
        self.models = ModelEndpoints(
            self.catalog,
            self.keys,
            self.dispatcher,
            self.recorder,
            self.shadows,
            require_key=bool(settings.TURNOUT["REQUIRE_API_KEY"]),
        )
        self.notices.on(keys.catalog_channel(), self.catalog.invalidate)
        self.notices.on(keys.keys_channel(), self.keys.invalidate)
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
                await self.models.handle(path[len("/v2/models/") :], method, scope, receive, send)
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
            down = [name for name, result in report.items() if not result["ok"] and result.get("required", True)]
            logger.warning("not ready: %s down", ", ".join(down))
            await send_json(send, 503, {"ready": False, "down": down, "checks": report}, [(b"retry-after", b"5")])
            return
        await send_json(send, 200, {"ready": True, "checks": report})

"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` on a grpc.aio server.

A translation only: each method builds the request's scope from its metadata (`authorization:
Bearer <key>` or `x-api-key`, `x-request-id`, `traceparent`, the routing header) and calls the
same GatewayCore as HTTP (gateway/core.py), so keys, rate limits, validation, routing and
rollouts, batching, fallbacks and metrics are the HTTP gateway's. Statuses map to gRPC codes
(STATUS_CODES); the answer's headers travel as trailing metadata (x-request-id, ratelimit,
x-turnout-*, server-timing, retry-after). The call's gRPC deadline is the request's deadline.

Runs in its own process (`manage.py serve_grpc`, the Procfile's `grpc`), or with
TURNOUT_GRPC_IN_WEB inside each web process beside HTTP, sharing its core (gateway/app.py's
lifespan): docs/architecture.md compares the two. grpc's own message compression (gzip, deflate) works both ways.
Beside it: the standard health service (gateway/grpc_health.py) and server reflection (grpcurl).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from typing import Any

import grpc
from django.conf import settings
from google.protobuf import json_format
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.answers import Served
from gateway.core import GatewayCore
from gateway.grpc_codec import to_payload, to_response
from gateway.grpc_generated import grpc_predict_v2_pb2 as pb
from gateway.grpc_generated import grpc_predict_v2_pb2_grpc as pb_grpc
from gateway.grpc_health import HEALTH_SERVICE, ReadinessHealth
from gateway.http import Scope
from gateway.model_endpoints import Call
from gateway.protocol import ParsedRequest, ProtocolError, parse_payload

logger = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def scope_of(context: Any, method: str) -> Scope:
    """The request in the shape the core reads (ASGI's scope): headers from the metadata, the peer."""
    headers = []
    for key, value in context.invocation_metadata() or ():
        raw = value if isinstance(value, bytes) else value.encode("latin-1", errors="replace")
        headers.append((key.lower().encode("latin-1"), raw))
    return {
        "type": "grpc",
        "method": "POST",
        "path": f"/{SERVICE}/{method}",
        "headers": headers,
        "client": _peer(context.peer()),
    }


def _peer(peer: str | None) -> tuple[str, int] | None:
    # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"; a Unix socket has no address.
    if not peer or not peer.startswith(("ipv4:", "ipv6:")):
        return None
    host, _, port = peer.split(":", 1)[1].rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def metadata_of(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k != b"content-type")


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The service's methods, named as the protocol names them."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    async def _answer(self, context: Any, call: Call | None, work: Any) -> Any:
        """`work`'s result, or the gRPC status its ProtocolError maps to."""
        try:
            return await work
        except ProtocolError as exc:
            headers = exc.headers if exc.headers else (call.headers if call is not None else [])
            context.set_trailing_metadata(metadata_of(headers))
            await context.abort(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            logger.exception("unhandled error in a gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")

    def _call(self, context: Any, method: str, parse: Any = None) -> Call:
        self.core.notices.ensure_started()
        return self.core.models.call(scope_of(context, method), parse)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        ready, _ = await self.core.server_ready()
        return pb.ServerReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return json_format.ParseDict(self.core.server_metadata(), pb.ServerMetadataResponse())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        call = self._call(context, "ModelReady")

        async def ready() -> Any:
            try:
                await self.core.models.run(call, request.name, request.version or None, "ready")
            except ProtocolError as exc:
                if exc.status != 503:
                    raise
                return pb.ModelReadyResponse(ready=False)  # known, but not servable now
            return pb.ModelReadyResponse(ready=True)

        return await self._answer(context, call, ready())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        call = self._call(context, "ModelMetadata")

        async def metadata() -> Any:
            body = await self.core.models.run(call, request.name, request.version or None, "")
            body.pop("parameters", None)  # Turnout's additions; the message has no place for them
            context.set_trailing_metadata(metadata_of(call.headers))
            return json_format.ParseDict(body, pb.ModelMetadataResponse())

        return await self._answer(context, call, metadata())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        remaining = context.time_remaining()

        async def parse(signature: dict[str, Any], max_batch_size: int) -> ParsedRequest:
            payload, binary = to_payload(request)
            parsed = parse_payload(payload, binary, signature, max_batch_size)
            if remaining is not None:
                # The call's deadline is the request's (capped, as parameters.timeout is, by
                # TURNOUT_MAX_REQUEST_TIMEOUT_SECONDS in the core).
                deadline_us = math.floor(remaining * 1_000_000)
                if deadline_us <= 0:
                    raise ProtocolError(504, "the call's deadline passed before it was queued")
                parsed.timeout_us = min(parsed.timeout_us or deadline_us, deadline_us)
            return parsed

        call = self._call(context, "ModelInfer", parse)

        async def infer() -> Any:
            version = request.model_version or None
            served: Served = await self.core.models.run(call, request.model_name, version, "infer")
            response = to_response(
                served.model_name, str(served.version), served.request, served.outputs, served.parameters
            )
            context.set_trailing_metadata(metadata_of(call.headers))
            # Once this handler has returned, which is when the answer is being sent.
            asyncio.get_running_loop().call_soon(self.core.models.finish, call, served)
            return response

        return await self._answer(context, call, infer())

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        call = self._call(context, "ModelConfig")

        async def config() -> Any:
            body = await self.core.triton.config(call, request.name, request.version or None)
            return json_format.ParseDict({"config": body}, pb.ModelConfigResponse())

        return await self._answer(context, call, config())

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        call = self._call(context, "ModelStatistics")

        async def statistics() -> Any:
            body = await self.core.triton.statistics(call, request.name or None, request.version or None)
            return json_format.ParseDict(body, pb.ModelStatisticsResponse())

        return await self._answer(context, call, statistics())

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        call = self._call(context, "RepositoryIndex")

        async def index() -> Any:
            models = await self.core.triton.index(call, request.ready)
            return json_format.ParseDict({"models": models}, pb.RepositoryIndexResponse())

        return await self._answer(context, call, index())

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        call = self._call(context, "RepositoryModelLoad")

        async def load() -> Any:
            await self.core.triton.command(call, request.model_name, "load")
            return pb.RepositoryModelLoadResponse()

        return await self._answer(context, call, load())

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        call = self._call(context, "RepositoryModelUnload")

        async def unload() -> Any:
            await self.core.triton.command(call, request.model_name, "unload")
            return pb.RepositoryModelUnloadResponse()

        return await self._answer(context, call, unload())


def server_options() -> list[tuple[str, Any]]:
    return [
        # The HTTP body limit, for the gRPC message (grpc answers RESOURCE_EXHAUSTED past it).
        ("grpc.max_receive_message_length", int(settings.TURNOUT["MAX_REQUEST_BYTES"])),
        ("grpc.max_send_message_length", -1),
        # Several serving processes may bind the same port; the kernel spreads connections.
        ("grpc.so_reuseport", 1),
    ]


class GrpcServer:
    """A started grpc.aio server and its health service, stopped together."""

    def __init__(self, server: Any, health: ReadinessHealth) -> None:
        self.server = server
        self.health = health

    async def stop(self, grace: float) -> None:
        await self.health.drain()
        await self.server.stop(grace)


async def start_server(core: GatewayCore, bind: str) -> GrpcServer:
    """A started grpc.aio server of `core` on `bind` (its own process's, or a web process's)."""
    server = grpc.aio.server(options=server_options())
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(core), server)
    health = ReadinessHealth(core.server_ready, (SERVICE,))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    if server.add_insecure_port(bind) == 0:
        raise OSError(f"cannot listen on {bind} (TURNOUT_GRPC_BIND)")
    await server.start()
    logger.info("gRPC inference service listening on %s", bind)
    return GrpcServer(server, health)


async def serve(bind: str, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
    """Serve on `bind` until `stop` is set (or SIGTERM / SIGINT), then drain for up to 10 s."""
    core = GatewayCore()
    server = await start_server(core, bind)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await server.stop(10)
        await core.close()

"""The standard gRPC health service, `grpc.health.v1.Health` (Check and Watch), for the gRPC server.

What Kubernetes' native gRPC probes (`grpc: {port: 8001}`), grpc_health_probe, Envoy and gRPC
load balancers ask. For the names "" (the server) and `inference.GRPCInferenceService`, SERVING
means what HTTP `/v2/health/ready` means (gateway/health.py's Readiness: PostgreSQL, Redis and a
live worker answer); NOT_SERVING otherwise, and from the moment the server starts draining. A
third name, "liveness", is SERVING whenever the process answers at all (HTTP `/v2/health/live`):
a liveness probe on it does not restart every pod while Redis is down. Any other name is
NOT_FOUND to Check and SERVICE_UNKNOWN to Watch, as the protocol says.

The messages and stubs are grpcio-health-checking's; its own servicer holds statuses that
someone must push, while this one asks Readiness when a client asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
LIVENESS = "liveness"

# Probes arriving within this of a finished check share its answer: several kubelets, load
# balancers and Watch streams then cost one database and one Redis round trip a second at most.
FRESH_SECONDS = 1.0
# How often an open Watch stream re-checks; a change seen by a Check is sent to it at once.
WATCH_SECONDS = 5.0
# How long a drain waits for the open Watch streams to send NOT_SERVING before the server stops.
DRAIN_WRITE_SECONDS = 1.0

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class ReadinessHealth(health_pb2_grpc.HealthServicer):
    """Serving status from `check` (GatewayCore.server_ready), asked lazily and shared between callers."""

    def __init__(self, check: ReadyCheck, services: tuple[str, ...]) -> None:
        self._check = check
        self.services = frozenset(("", *services))
        self._status = NOT_SERVING  # until the first check says otherwise
        self._checked_at = -math.inf
        self._pending: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._draining = False
        self._was_ready: bool | None = None
        self._watching: set[asyncio.Task[Any]] = set()  # the open Watch streams' handlers

    async def status(self) -> int:
        """The current status, checked anew unless a check finished less than FRESH_SECONDS ago."""
        if self._draining:
            return NOT_SERVING
        if self._pending is None and time.monotonic() - self._checked_at >= FRESH_SECONDS:
            self._pending = asyncio.ensure_future(self._refresh())
        if self._pending is not None:
            # Shielded: a caller that goes away must not cancel the check the others wait for.
            await asyncio.shield(self._pending)
        return self._status

    async def _refresh(self) -> None:
        try:
            ready, report = await self._check()
        except Exception:
            logger.exception("the readiness check failed; answering NOT_SERVING")
            ready, report = False, {}
        finally:
            self._checked_at = time.monotonic()
            self._pending = None
        if ready != self._was_ready:  # one line per change, not per probe
            self._was_ready = ready
            failing = [name for name, item in report.items() if not item.get("ok") and item.get("required", True)]
            if ready:
                logger.info("gRPC health: SERVING")
            else:
                logger.warning("gRPC health: NOT_SERVING (%s)", ", ".join(failing) or "the check failed")
        if not self._draining:
            self._set(SERVING if ready else NOT_SERVING)

    def _set(self, status: int) -> None:
        if status != self._status:
            self._status = status
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()  # wakes the Watch streams

    async def drain(self) -> None:
        """NOT_SERVING from now on, sent to every Watch stream, so clients move away before the server stops."""
        self._draining = True
        self._set(NOT_SERVING)
        # Let each open stream send NOT_SERVING and end before the server stops: woken is not yet
        # written, and a server stopping at once could close a stream before its last message.
        if self._watching:
            await asyncio.wait(set(self._watching), timeout=DRAIN_WRITE_SECONDS)

    async def _status_of(self, service: str) -> int | None:
        if service == LIVENESS:
            return SERVING  # answering is the proof
        return await self.status() if service in self.services else None

    async def Check(self, request: Any, context: Any) -> Any:
        status = await self._status_of(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._watching.add(task)
            task.add_done_callback(self._watching.discard)
        last = None
        while True:
            changed = self._changed
            status = await self._status_of(request.service)
            status = SERVICE_UNKNOWN if status is None else status
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self._draining:
                # Said; an open stream would hold the server's stop for its whole grace period.
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_SECONDS):
                    await changed.wait()

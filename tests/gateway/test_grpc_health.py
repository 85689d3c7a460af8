"""gateway/grpc_health.py on a real grpc.aio server over the real readiness checks: a Watch stream
hears a change as soon as a Check sees it, and probes that arrive together share one check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis
from django.conf import settings
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.redis_client import redis_keys
from dataplane.liveness import record_heartbeat
from gateway.grpc_health import FRESH_SECONDS, ReadinessHealth
from gateway.health import Readiness

pytestmark = pytest.mark.django_db

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def run_with_health(check: Any, scenario: Callable[[Any], Awaitable[None]]) -> None:
    """`scenario(stub)` against a grpc.aio server holding only the health service."""

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(
            ReadinessHealth(check, ("inference.GRPCInferenceService",)), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await scenario(health_pb2_grpc.HealthStub(channel))
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_watch_hears_serving_once_a_check_sees_a_live_worker(redis_client: redis.Redis) -> None:
    readiness = Readiness()

    async def scenario(stub: Any) -> None:
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == NOT_SERVING  # no worker has beaten yet
        record_heartbeat(
            redis_client, redis_keys(), "worker@test", {"pid": 1}, float(settings.TURNOUT["WORKER_TTL_SECONDS"])
        )
        await asyncio.sleep(FRESH_SECONDS)
        assert (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status == SERVING
        # Long before the stream's own 5 s re-check: the Check's result wakes it.
        async with asyncio.timeout(1):
            assert (await watch.read()).status == SERVING
        watch.cancel()
        await readiness.close()

    run_with_health(readiness.check, scenario)


def test_probes_arriving_together_share_one_readiness_check() -> None:
    readiness = Readiness(redis_url="redis://127.0.0.1:1/0")  # nothing listens: NOT_SERVING
    calls = []

    async def counted() -> tuple[bool, dict[str, Any]]:
        calls.append(1)
        return await readiness.check()

    async def scenario(stub: Any) -> None:
        request = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        answers = await asyncio.gather(*(stub.Check(request, timeout=5) for _ in range(20)))
        assert {answer.status for answer in answers} == {NOT_SERVING}
        assert len(calls) == 1
        live = await stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
        assert live.status == SERVING
        assert len(calls) == 1  # liveness asks nothing of the dependencies
        await readiness.close()

    run_with_health(counted, scenario)

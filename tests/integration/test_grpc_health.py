"""The standard gRPC health service (grpc.health.v1.Health) of a real `manage.py serve_grpc`, as
Kubernetes' gRPC probes and grpc_health_probe ask it: SERVING with PostgreSQL, Redis and a live
worker, NOT_SERVING without Redis (and no crash, "liveness" still SERVING), NOT_SERVING to open
Watch streams on SIGTERM. Server reflection lists the services, as grpcurl reads them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.processes import GrpcProcess, free_port

pytestmark = pytest.mark.django_db(transaction=True)

INFERENCE = "inference.GRPCInferenceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def grpc_server(worker: Any, artifact_dir: Path, tmp_path: Path) -> Iterator[GrpcProcess]:
    """serve_grpc in front of the module's live worker."""
    server = GrpcProcess(tmp_path / "grpc.log", ARTIFACT_ROOT=str(artifact_dir))
    try:
        assert server.wait_ready(), server.log()
        yield server
    finally:
        server.stop()


def check(target: str, service: str) -> Any:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)


def test_unknown_service_is_not_found_and_watch_says_service_unknown(grpc_server: GrpcProcess) -> None:
    with pytest.raises(grpc.RpcError) as unknown:
        check(grpc_server.url, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(grpc_server.url) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        stream.cancel()


def test_check_and_watch_are_serving_with_database_redis_and_a_worker(grpc_server: GrpcProcess) -> None:
    assert check(grpc_server.url, "").status == SERVING
    assert check(grpc_server.url, INFERENCE).status == SERVING
    assert check(grpc_server.url, "liveness").status == SERVING
    # The same meaning as the protocol's own ServerReady (and HTTP /v2/health/ready).
    assert grpcclient.InferenceServerClient(grpc_server.url).is_server_ready()
    with grpc.insecure_channel(grpc_server.url) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=INFERENCE))
        assert next(stream).status == SERVING
        stream.cancel()


def test_watch_turns_not_serving_when_the_server_drains(grpc_server: GrpcProcess) -> None:
    with grpc.insecure_channel(grpc_server.url) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(stream).status == SERVING
        os.killpg(grpc_server.process.pid, signal.SIGTERM)
        assert next(stream).status == NOT_SERVING
        with pytest.raises(StopIteration):
            next(stream)  # the stream ends, so it does not hold the server's stop for its grace period
    # Well within the 10 s grace: nothing else was in flight.
    assert grpc_server.process.wait(8) == 0, grpc_server.log()


def test_reflection_lists_the_inference_and_health_services(grpc_server: GrpcProcess) -> None:
    with grpc.insecure_channel(grpc_server.url) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for service in next(answers).list_services_response.service}
    assert {INFERENCE, "grpc.health.v1.Health"} <= names


def test_not_serving_when_redis_is_unreachable_and_the_process_lives_on(artifact_dir: Path, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    server = GrpcProcess(
        tmp_path / "grpc.log", ARTIFACT_ROOT=str(artifact_dir), REDIS_URL=f"redis://127.0.0.1:{closed}/0"
    )
    try:
        assert server.wait_ready(), server.log()
        assert check(server.url, "").status == NOT_SERVING
        assert check(server.url, INFERENCE).status == NOT_SERVING
        with grpc.insecure_channel(server.url) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=INFERENCE))
            assert next(stream).status == NOT_SERVING
            stream.cancel()
        # Live, not ready: the liveness answers are not Redis's.
        assert check(server.url, "liveness").status == SERVING
        assert grpcclient.InferenceServerClient(server.url).is_server_live()
        assert check(server.url, "").status == NOT_SERVING
        assert server.process.poll() is None, server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()

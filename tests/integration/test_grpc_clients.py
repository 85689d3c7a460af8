"""The standard clients, as others wrote them, against real processes: tritonclient.grpc against
`manage.py serve_grpc`, tritonclient.http against a uvicorn web process, both in front of a real
Celery worker. Raw tensor contents, metadata, readiness, the gRPC status of each refusal, Triton's
statistics, repository and configuration extensions, and a gzip request body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from accounts import services
from registry.demo_models import build_mlp
from tests.support.clients import bearer
from tests.support.processes import GrpcProcess, WebProcess, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = build_mlp(4, [8], 3)
ROWS = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)


@pytest.fixture(scope="module")
def servers(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    logs = tmp_path_factory.mktemp("servers")
    grpc_server = GrpcProcess(logs / "grpc.log", ARTIFACT_ROOT=str(artifact_dir))
    web = WebProcess(logs / "web.log", ARTIFACT_ROOT=str(artifact_dir))
    try:
        assert grpc_server.wait_ready(), grpc_server.log()
        assert web.wait_ready(), web.log()
        yield grpc_server, web
    finally:
        grpc_server.stop()
        web.stop()


@pytest.fixture
def model(serve: Callable[..., Any]) -> str:
    serve("inf-grpc", MODEL)
    return "inf-grpc"


@pytest.fixture
def secret(owner: Any) -> str:
    """A key of the model's owner with every action."""
    return services.create_key(owner, name="clients", model_patterns=["*"], actions=["infer", "read", "manage"])[1]


def expected(rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": rows})[0])


def grpc_input(rows: np.ndarray) -> Any:
    tensor = grpcclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # travels in raw_input_contents
    return tensor


def status_of(exc: InferenceServerException) -> str:
    return str(exc.status())


def test_grpc_client_reads_metadata_and_infers_with_raw_contents(servers: Any, model: str, secret: str) -> None:
    grpc_server, _ = servers
    client = grpcclient.InferenceServerClient(grpc_server.url)
    headers = bearer(secret)

    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model, headers=headers)
    metadata = client.get_model_metadata(model, headers=headers, as_json=True)
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    server = client.get_server_metadata(as_json=True)
    assert "statistics" in server["extensions"]

    rows = np.repeat(ROWS, 3, axis=0)
    result = client.infer(model, [grpc_input(rows)], request_id="r-1", headers=headers)
    np.testing.assert_allclose(result.as_numpy("output"), expected(rows), rtol=1e-5)
    response = result.get_response(as_json=True)
    assert response["id"] == "r-1"
    assert response["model_version"] == "1"
    assert response["parameters"]["arm"] == {"string_param": "champion"}


def test_grpc_client_reads_tritons_extensions(servers: Any, model: str, owner: Any, secret: str) -> None:
    grpc_server, _ = servers
    client = grpcclient.InferenceServerClient(grpc_server.url)
    headers = bearer(secret)

    config = client.get_model_config(model, headers=headers, as_json=True)["config"]
    assert config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": ["4"]}]
    index = client.get_model_repository_index(headers=headers, as_json=True)["models"]
    assert {"name": model, "version": "1", "state": "READY"} in index
    client.load_model(model, headers=headers)
    client.unload_model(model, headers=headers)
    stats = client.get_inference_statistics(model, headers=headers, as_json=True)["model_stats"]
    assert [(entry["name"], entry["version"]) for entry in stats] == [(model, "1")]

    reader = bearer(services.create_key(owner, name="reader", model_patterns=["*"], actions=["read"])[1])
    with pytest.raises(InferenceServerException) as denied:
        client.load_model(model, headers=reader)
    assert status_of(denied.value) == "StatusCode.PERMISSION_DENIED"


def test_grpc_refusals_have_their_status_codes(servers: Any, model: str, owner: Any, secret: str) -> None:
    grpc_server, _ = servers
    client = grpcclient.InferenceServerClient(grpc_server.url)

    with pytest.raises(InferenceServerException) as no_key:
        client.infer(model, [grpc_input(ROWS)])
    assert status_of(no_key.value) == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as wrong_key:
        client.infer(model, [grpc_input(ROWS)], headers=bearer(secret[:-2] + "xx"))
    assert status_of(wrong_key.value) == "StatusCode.UNAUTHENTICATED"

    bad = grpcclient.InferInput("input", [1, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as invalid:
        client.infer(model, [bad], headers=bearer(secret))
    assert status_of(invalid.value) == "StatusCode.INVALID_ARGUMENT"
    assert "dimension 1 is 5, the model expects 4" in invalid.value.message()

    with pytest.raises(InferenceServerException) as unknown:
        client.infer("inf-nothing", [grpc_input(ROWS)], headers=bearer(secret))
    assert status_of(unknown.value) == "StatusCode.NOT_FOUND"

    reader = services.create_key(owner, name="reader", model_patterns=["*"], actions=["read"])[1]
    with pytest.raises(InferenceServerException) as denied:
        client.infer(model, [grpc_input(ROWS)], headers=bearer(reader))
    assert status_of(denied.value) == "StatusCode.PERMISSION_DENIED"

    key, limited = services.create_key(owner, name="limited", model_patterns=["*"], actions=["infer"])
    services.set_limits(key, actor=owner, requests_per_window=1, window_seconds=3600, burst=1)
    client.infer(model, [grpc_input(ROWS)], headers=bearer(limited))
    with pytest.raises(InferenceServerException) as over:
        client.infer(model, [grpc_input(ROWS)], headers=bearer(limited))
    assert status_of(over.value) == "StatusCode.RESOURCE_EXHAUSTED"
    assert "rate limit" in over.value.message()


def test_grpc_deadline_is_the_request_deadline(servers: Any, model: str, secret: str) -> None:
    grpc_server, _ = servers
    client = grpcclient.InferenceServerClient(grpc_server.url)
    # Over the server's gRPC compression too: grpc's own gzip of the messages.
    result = client.infer(
        model, [grpc_input(ROWS)], headers=bearer(secret), client_timeout=5.0, compression_algorithm="gzip"
    )
    np.testing.assert_allclose(result.as_numpy("output"), expected(ROWS), rtol=1e-5)
    with pytest.raises(InferenceServerException) as late:
        client.infer(model, [grpc_input(ROWS)], headers=bearer(secret), client_timeout=0.000001)
    assert status_of(late.value) == "StatusCode.DEADLINE_EXCEEDED"


def test_http_client_statistics_repository_configuration_and_gzip(
    servers: Any, serve: Callable[..., Any], owner: Any, secret: str
) -> None:
    # A model of its own: the other tests' answers stay in this run's statistics.
    model = "inf-stats"
    serve(model, MODEL)
    _, web = servers
    client = httpclient.InferenceServerClient(web.url.removeprefix("http://"))
    headers = bearer(secret)

    rows = np.repeat(ROWS, 2, axis=0)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    # A headers dict of its own per compressed call: the client adds Content-Encoding to the one it is given.
    result = client.infer(model, [tensor], headers=bearer(secret), request_compression_algorithm="gzip")
    np.testing.assert_allclose(result.as_numpy("output"), expected(rows), rtol=1e-5)
    result = client.infer(model, [tensor], headers=bearer(secret), request_compression_algorithm="deflate")
    np.testing.assert_allclose(result.as_numpy("output"), expected(rows), rtol=1e-5)

    config = client.get_model_config(model, headers=headers)
    assert config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"][0]["data_type"] == "TYPE_FP32"
    assert config["max_batch_size"] > 0
    assert "dynamic_batching" in config

    index = client.get_model_repository_index(headers=headers)
    assert {"name": model, "version": "1", "state": "READY", "reason": ""} in index
    client.load_model(model, headers=headers)
    client.unload_model(model, headers=headers)

    reader = bearer(services.create_key(owner, name="r", model_patterns=["*"], actions=["read"])[1])
    with pytest.raises(InferenceServerException) as denied:
        client.load_model(model, headers=reader)
    assert denied.value.status() == "403"

    def stats() -> dict[str, Any]:
        [entry] = client.get_inference_statistics(model, headers=headers)["model_stats"]
        return dict(entry)

    # The web process flushes its counts to Redis about once a second.
    assert wait_for(lambda: stats()["inference_count"] == 2, timeout=5), stats()
    entry = stats()
    assert entry["name"] == model
    assert entry["version"] == "1"
    assert entry["inference_stats"]["success"]["count"] == 2
    assert entry["inference_stats"]["success"]["ns"] > 0
    assert entry["inference_stats"]["compute_infer"]["count"] == 2
    assert entry["execution_count"] >= 1
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in entry["batch_stats"]) >= 2


def test_grpc_inside_the_web_process_serves_the_same_rules(
    model: str, secret: str, artifact_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    web = WebProcess(
        tmp_path / "web.log",
        ARTIFACT_ROOT=str(artifact_dir),
        TURNOUT_GRPC_IN_WEB="true",
        TURNOUT_GRPC_BIND=f"127.0.0.1:{port}",
    )
    try:
        assert web.wait_ready(), web.log()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        result = client.infer(model, [grpc_input(ROWS)], headers=bearer(secret))
        np.testing.assert_allclose(result.as_numpy("output"), expected(ROWS), rtol=1e-5)
        with pytest.raises(InferenceServerException) as no_key:
            client.infer(model, [grpc_input(ROWS)])
        assert status_of(no_key.value) == "StatusCode.UNAUTHENTICATED"
    finally:
        web.stop()

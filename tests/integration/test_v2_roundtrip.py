"""V2 round trips through a real worker: every datatype, JSON and binary tensors,
output selection, metadata and readiness, explicit versions, and MLP outputs
checked against onnxruntime run locally on the same input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
from onnx import TensorProto

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.wire import NUMPY_DTYPES
from registry.demo_models import build_identity, build_iris_classifier, build_mlp
from tests.support.v2 import (
    Gateway,
    binary_request,
    bytes_elements,
    parse_bytes_elements,
    split_binary_response,
    tensor,
)

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Case:
    datatype: str
    onnx_type: int
    rows: list[list[Any]]  # two rows of three elements, extremes of the type included


CASES = [
    Case("BOOL", TensorProto.BOOL, [[True, False, True], [False, False, True]]),
    Case("UINT8", TensorProto.UINT8, [[0, 255, 7], [1, 128, 254]]),
    Case("UINT16", TensorProto.UINT16, [[0, 65535, 7], [1, 32768, 65534]]),
    Case("UINT32", TensorProto.UINT32, [[0, 2**32 - 1, 7], [1, 2**31, 2**32 - 2]]),
    Case("UINT64", TensorProto.UINT64, [[0, 2**64 - 1, 7], [1, 2**63, 2**64 - 2]]),
    Case("INT8", TensorProto.INT8, [[-128, 127, 0], [-1, 1, 42]]),
    Case("INT16", TensorProto.INT16, [[-(2**15), 2**15 - 1, 0], [-1, 1, 42]]),
    Case("INT32", TensorProto.INT32, [[-(2**31), 2**31 - 1, 0], [-1, 1, 42]]),
    Case("INT64", TensorProto.INT64, [[-(2**63), 2**63 - 1, 0], [-1, 1, 2**53 + 1]]),
    Case("FP16", TensorProto.FLOAT16, [[0.5, -2.0, 65504.0], [0.0, 1.0009765625, -0.000061035156]]),
    Case("FP32", TensorProto.FLOAT, [[1.5, -3.25, 3.0e38], [0.0, 1.0e-30, -123456.78]]),
    Case("FP64", TensorProto.DOUBLE, [[1.0e300, -1.0e-300, 0.1], [0.0, 2.0**-1074, -123456.789012345]]),
    Case("BYTES", TensorProto.STRING, [["hello", "", "ünïcødé ✓"], ["a b", "x" * 300, "\u0000nul"]]),
]


def expected_array(case: Case) -> np.ndarray:
    if case.datatype == "BYTES":
        return np.array([[item.encode() for item in row] for row in case.rows], dtype=object)
    return np.array(case.rows, dtype=NUMPY_DTYPES[case.datatype])


def json_values(case: Case, data: list[Any]) -> np.ndarray:
    if case.datatype == "BYTES":
        assert all(isinstance(item, str) for item in data)
        return np.array([item.encode() for item in data], dtype=object).reshape(2, 3)
    return np.array(data, dtype=NUMPY_DTYPES[case.datatype]).reshape(2, 3)


def raw_values(case: Case, raw: bytes) -> np.ndarray:
    if case.datatype == "BYTES":
        return np.array(parse_bytes_elements(raw), dtype=object).reshape(2, 3)
    return np.frombuffer(raw, dtype=NUMPY_DTYPES[case.datatype]).reshape(2, 3)


def raw_input(case: Case) -> bytes:
    array = expected_array(case)
    if case.datatype == "BYTES":
        return bytes_elements(list(array.ravel()))
    return array.tobytes()


def local_session(onnx_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def stream_length(redis_conn: redis.Redis, version: Any) -> int:
    return int(redis_conn.xlen(redis_keys().request_stream(version.id, NORMAL)))


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.datatype) for case in CASES],
)
def test_identity_echoes_every_datatype_in_json_and_binary(
    case: Case, serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve(f"inf-identity-{case.datatype.lower()}", build_identity(case.onnx_type, [None, 3]))
    name = version.model.name
    expected = expected_array(case)
    json_input = {"name": "input", "datatype": case.datatype, "shape": [2, 3], "data": case.rows}
    binary_input: dict[str, Any] = {"name": "input", "datatype": case.datatype, "shape": [2, 3]}
    binary_input["parameters"] = {"binary_data_size": len(raw_input(case))}

    # JSON in, JSON out.
    response = gateway.infer(name, {"id": f"req-{case.datatype}", "inputs": [json_input]})
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == name
    assert body["model_version"] == "1"
    assert body["id"] == f"req-{case.datatype}"
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", case.datatype, [2, 3])
    assert np.array_equal(json_values(case, output["data"]), expected)

    # Binary in, binary out (per output).
    header = {
        "id": "bin",
        "inputs": [binary_input],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
    }
    raw_body, headers = binary_request(header, [raw_input(case)])
    response = gateway.infer(name, raw_body, headers=headers)
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/octet-stream"
    head, blobs = split_binary_response(response)
    assert head["id"] == "bin"
    [output] = head["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", case.datatype, [2, 3])
    assert "data" not in output
    assert output["parameters"]["binary_data_size"] == len(blobs["output"]) == len(raw_input(case))
    assert np.array_equal(raw_values(case, blobs["output"]), expected)

    # JSON in, binary out for every output through the request-level parameter.
    response = gateway.infer(name, {"inputs": [json_input], "parameters": {"binary_data_output": True}})
    assert response.status == 200, response.body
    _, blobs = split_binary_response(response)
    assert np.array_equal(raw_values(case, blobs["output"]), expected)

    # Binary in, JSON out.
    raw_body, headers = binary_request({"inputs": [binary_input]}, [raw_input(case)])
    response = gateway.infer(name, raw_body, headers=headers)
    assert response.status == 200, response.body
    assert "inference-header-content-length" not in response.headers
    assert np.array_equal(json_values(case, response.json()["outputs"][0]["data"]), expected)

    # Every answered request left the version's stream.
    assert stream_length(redis_conn, version) == 0


def test_bytes_in_binary_keep_their_element_boundaries(serve: Callable[..., Any], gateway: Gateway) -> None:
    serve("inf-identity-bytes", build_identity(TensorProto.STRING, [None, 3]))
    raw = bytes_elements([b"", b"a", b"bc", b"x" * 1000, b"tab\there", "ü".encode()])
    # Each element: its length as 4 little-endian bytes, then the bytes.
    assert raw[:4] == b"\x00\x00\x00\x00"
    assert raw[4:9] == b"\x01\x00\x00\x00a"
    header = {
        "inputs": [
            {"name": "input", "datatype": "BYTES", "shape": [2, 3], "parameters": {"binary_data_size": len(raw)}}
        ],
        "parameters": {"binary_data_output": True},
    }
    raw_body, headers = binary_request(header, [raw])

    response = gateway.infer("inf-identity-bytes", raw_body, headers=headers)

    assert response.status == 200, response.body
    head, blobs = split_binary_response(response)
    [output] = head["outputs"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [2, 3])
    assert len(parse_bytes_elements(blobs["output"])) == 6


def test_nested_and_flat_data_give_the_same_answer(serve: Callable[..., Any], gateway: Gateway) -> None:
    serve("inf-identity-rank3", build_identity(TensorProto.FLOAT, [None, 2, 3]))
    values = np.arange(12, dtype=np.float32).reshape(2, 2, 3) / 4

    flat = gateway.infer("inf-identity-rank3", {"inputs": [tensor("input", "FP32", values)]})
    nested = gateway.infer("inf-identity-rank3", {"inputs": [tensor("input", "FP32", values, nested=True)]})

    assert flat.status == nested.status == 200, (flat.body, nested.body)
    assert flat.json()["outputs"] == nested.json()["outputs"]
    [output] = nested.json()["outputs"]
    assert output["shape"] == [2, 2, 3]
    assert np.array_equal(np.array(output["data"], dtype=np.float32).reshape(2, 2, 3), values)


def test_mlp_matches_onnxruntime_run_locally(serve: Callable[..., Any], gateway: Gateway) -> None:
    onnx_bytes = build_mlp(16, [32, 32], 5, seed=3)
    serve("inf-mlp", onnx_bytes)
    features = np.random.default_rng(7).standard_normal((4, 16)).astype(np.float32)
    [expected] = local_session(onnx_bytes).run(None, {"input": features})

    response = gateway.infer("inf-mlp", {"inputs": [tensor("input", "FP32", features)]})

    assert response.status == 200, response.body
    [output] = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [4, 5])
    assert np.allclose(np.array(output["data"], dtype=np.float32).reshape(4, 5), expected, rtol=1e-5, atol=1e-6)


def test_an_explicit_version_path_reaches_that_version(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    first, second = build_mlp(8, [16], 3, seed=1), build_mlp(8, [16], 3, seed=2)
    v1 = serve("inf-versions", first)
    v2 = serve("inf-versions", second)  # production moves to version 2
    features = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)

    old = gateway.infer("inf-versions", {"inputs": [tensor("input", "FP32", features)]}, version=1)
    default = gateway.infer("inf-versions", {"inputs": [tensor("input", "FP32", features)]})

    assert old.status == default.status == 200, (old.body, default.body)
    assert old.json()["model_version"] == old.headers["x-turnout-model-version"] == "1"
    assert default.json()["model_version"] == default.headers["x-turnout-model-version"] == "2"
    for response, onnx_bytes in ((old, first), (default, second)):
        [expected] = local_session(onnx_bytes).run(None, {"input": features})
        data = np.array(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
        assert np.allclose(data, expected, rtol=1e-5, atol=1e-6)
    assert (v1.number, v2.number) == (1, 2)
    assert stream_length(redis_conn, v1) == stream_length(redis_conn, v2) == 0


def test_outputs_select_and_order_what_the_response_carries(serve: Callable[..., Any], gateway: Gateway) -> None:
    onnx_bytes = build_iris_classifier()
    serve("inf-iris", onnx_bytes)
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    labels, probabilities = local_session(onnx_bytes).run(["label", "probabilities"], {"input": flowers})
    request = {"inputs": [tensor("input", "FP32", flowers)]}

    everything = gateway.infer("inf-iris", request)
    only_probabilities = gateway.infer("inf-iris", {**request, "outputs": [{"name": "probabilities"}]})
    only_label = gateway.infer("inf-iris", {**request, "outputs": [{"name": "label"}]})
    reversed_order = gateway.infer("inf-iris", {**request, "outputs": [{"name": "probabilities"}, {"name": "label"}]})

    for response in (everything, only_probabilities, only_label, reversed_order):
        assert response.status == 200, response.body
    assert [o["name"] for o in everything.json()["outputs"]] == ["label", "probabilities"]
    assert [o["name"] for o in only_probabilities.json()["outputs"]] == ["probabilities"]
    assert [o["name"] for o in only_label.json()["outputs"]] == ["label"]
    assert [o["name"] for o in reversed_order.json()["outputs"]] == ["probabilities", "label"]
    label, probs = everything.json()["outputs"]
    assert (label["datatype"], label["shape"], label["data"]) == ("INT64", [3], labels.tolist())
    assert label["data"] == [0, 2, 1]  # setosa, virginica, versicolor: the classifier has learned
    assert (probs["datatype"], probs["shape"]) == ("FP32", [3, 3])
    assert np.allclose(np.array(probs["data"], dtype=np.float32).reshape(3, 3), probabilities, atol=1e-6)


def test_one_output_in_binary_and_the_other_in_json(serve: Callable[..., Any], gateway: Gateway) -> None:
    onnx_bytes = build_iris_classifier()
    serve("inf-iris", onnx_bytes)
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    _, probabilities = local_session(onnx_bytes).run(["label", "probabilities"], {"input": flowers})
    outputs = [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]

    response = gateway.infer("inf-iris", {"inputs": [tensor("input", "FP32", flowers)], "outputs": outputs})

    assert response.status == 200, response.body
    head, blobs = split_binary_response(response)
    label, probs = head["outputs"]
    assert label["data"] == [0, 2]
    assert set(blobs) == {"probabilities"}
    assert probs["parameters"]["binary_data_size"] == 2 * 3 * 4
    assert np.allclose(np.frombuffer(blobs["probabilities"], dtype="<f4").reshape(2, 3), probabilities, atol=1e-6)


def test_model_metadata_and_readiness(serve: Callable[..., Any], gateway: Gateway) -> None:
    serve("inf-meta", build_mlp(6, [8], 2, seed=1))
    serve("inf-meta", build_mlp(6, [8], 2, seed=2), max_batch_size=16)

    latest = gateway.get("/v2/models/inf-meta")
    first = gateway.get("/v2/models/inf-meta/versions/1")
    ready = gateway.get("/v2/models/inf-meta/ready")
    ready_v1 = gateway.get("/v2/models/inf-meta/versions/1/ready")

    assert latest.status == first.status == ready.status == ready_v1.status == 200
    body = latest.json()
    assert body["name"] == "inf-meta"
    assert body["versions"] == ["1", "2"]
    assert body["platform"] == "onnx_onnxv1"
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 6]}]
    assert body["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]
    assert body["parameters"]["version"] == "2"
    assert body["parameters"]["max_batch_size"] == 16
    assert list(body["parameters"]["execution_providers"].values()) == ["CPUExecutionProvider"]
    assert first.json()["parameters"]["version"] == "1"
    assert first.json()["parameters"]["max_batch_size"] == 64
    assert ready.json()["ready"] is True
    assert ready.json()["version"] == "2"
    assert ready_v1.json()["version"] == "1"

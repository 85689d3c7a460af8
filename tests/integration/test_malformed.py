"""Malformed V2 requests against ready models: each is refused with its own
status and a message that names the problem, always as `{"error": "..."}`,
never a 500, and never enqueued for a worker.

The models are registered once for the module (the table is long and every
case only reads the registry): the module fixture commits them and flushes at
the end, so the tests need only the plain `django_db` mark (which also makes
pytest-django set up the test database at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from onnx import TensorProto

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from registry.demo_models import build_identity, build_mlp
from tests.support.serving import Workers, committed_registry
from tests.support.v2 import Gateway, binary_request, infer_path

pytestmark = pytest.mark.django_db

ROW = [0.5, -1.0, 2.0, 0.25]
MAX_BATCH = 8


def valid(**changes: Any) -> dict[str, Any]:
    """A valid request for `inf-mlp` (FP32 [-1, 4], max batch 8), with the given top-level changes."""
    body: dict[str, Any] = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": ROW * 2}]}
    body.update(changes)
    return body


def with_input(**changes: Any) -> dict[str, Any]:
    """A valid request whose one input has the given fields changed (None removes a field)."""
    item: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [2, 4], "data": ROW * 2}
    item.update(changes)
    return {"inputs": [{k: v for k, v in item.items() if v is not None}]}


def identity(datatype: str, data: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": datatype, "shape": shape or [1, 3], "data": data}]}


def binary(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    return binary_request(header, list(blobs))


def sized(size: int, **changes: Any) -> dict[str, Any]:
    """A request whose input travels in binary, `size` bytes announced."""
    item = {"name": "input", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": size}}
    item.update(changes)
    return {"inputs": [item]}


FP32_ROWS = np.array(ROW * 2, dtype="<f4").tobytes()  # 32 bytes, shape [2, 4]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@dataclass(frozen=True)
class Bad:
    status: int
    phrase: str
    body: Any = b""
    model: str = "inf-mlp"
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str | None = None  # instead of the model's infer path
    expect_headers: dict[str, str] = field(default_factory=dict)
    max_request_bytes: int | None = None

    def request(self) -> tuple[str, str, bytes, dict[str, str]]:
        headers = {"content-type": "application/json"}
        body = self.body
        if isinstance(body, tuple):  # binary_request's (body, headers)
            body, extra = body
            headers.update(extra)
        elif not isinstance(body, bytes):
            body = orjson.dumps(body)
        headers.update(self.headers)
        return self.method, self.path or infer_path(self.model), body, headers


def case(id: str, status: int, phrase: str, body: Any = b"", marks: Any = (), **kwargs: Any) -> Any:
    return pytest.param(Bad(status, phrase, body, **kwargs), id=id, marks=marks)


TOO_MANY_ROWS = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [9, 4], "data": ROW * 9}]}
NOT_READY = {"retry-after": "5"}

CASES = [
    # The body as a whole.
    case("not-json", 400, "not valid JSON", b"{inputs: [}"),
    case("empty-body", 400, "not valid JSON", b""),
    case("invalid-utf8", 400, "not valid JSON", b'{"id": "\xff\xfe"}'),
    case("json-array-body", 400, "must be a JSON object", b"[1, 2]"),
    case("json-string-body", 400, "must be a JSON object", b'"inputs"'),
    case("nan-literal", 400, "not valid JSON", orjson.dumps(valid()).replace(b"0.5", b"NaN")),
    case("infinity-literal", 400, "not valid JSON", orjson.dumps(valid()).replace(b"0.5", b"Infinity")),
    case("overflowing-literal", 400, "not valid JSON", orjson.dumps(valid()).replace(b"0.5", b"1e309")),
    case("nested-2000-deep", 400, "not valid JSON", nested(2000)),
    case(
        "data-nested-2000-deep", 400, "not valid JSON", orjson.dumps(with_input(data=[])).replace(b"[]", nested(2000))
    ),
    # inputs
    case("missing-inputs", 400, "'inputs' must be a non-empty list", {}),
    case("empty-inputs", 400, "'inputs' must be a non-empty list", {"inputs": []}),
    case("inputs-not-a-list", 400, "'inputs' must be a non-empty list", {"inputs": with_input()["inputs"][0]}),
    case("input-not-an-object", 400, "each input must be an object", {"inputs": [1]}),
    case("input-without-name", 400, "each input needs a 'name' string", with_input(name=None)),
    case("input-name-not-a-string", 400, "each input needs a 'name' string", with_input(name=7)),
    case(
        "unknown-input", 400, "unknown input 'features'; the model's inputs are ['input']", with_input(name="features")
    ),
    case("duplicate-input", 400, "input 'input' appears more than once", {"inputs": with_input()["inputs"] * 2}),
    case("missing-data", 400, "input 'input': 'data' is missing", with_input(data=None)),
    case("data-not-a-list", 400, "data must be a list", with_input(data=1.0)),
    # datatype
    case("wrong-datatype", 400, "datatype FP64 does not match the model's FP32", with_input(datatype="FP64")),
    case(
        "lowercase-datatype", 400, "unknown datatype 'fp32'; datatypes are case-sensitive", with_input(datatype="fp32")
    ),
    case("unknown-datatype", 400, "unknown datatype 'FLOAT'", with_input(datatype="FLOAT")),
    case("missing-datatype", 400, "unknown datatype None", with_input(datatype=None)),
    case(
        "datatype-a-list",
        400,
        "unknown datatype",
        with_input(datatype=["FP32"]),
    ),
    # shape
    case("missing-shape", 400, "shape must be a list of integers", with_input(shape=None)),
    case("shape-a-string", 400, "shape must be a list of integers", with_input(shape="2,4")),
    case("shape-negative-dim", 400, "must hold non-negative integers", with_input(shape=[-1, 4])),
    case("shape-float-dim", 400, "must hold non-negative integers", with_input(shape=[2.0, 4])),
    case("shape-bool-dim", 400, "must hold non-negative integers", with_input(shape=[True, 4])),
    case("shape-wrong-rank", 400, "has rank 1, the model expects rank 2", with_input(shape=[8])),
    case(
        "shape-wrong-fixed-dim", 400, "dimension 1 is 5, the model expects 4", with_input(shape=[2, 5], data=[0.0] * 10)
    ),
    case("batch-over-max", 400, f"batch of 9 is over this version's max batch size of {MAX_BATCH}", TOO_MANY_ROWS),
    case("batch-zero", 400, "the batch dimension must be at least 1", with_input(shape=[0, 4], data=[])),
    # data
    case("data-length-mismatch", 400, "data has 7 elements, shape [2, 4] needs 8", with_input(data=ROW + ROW[:3])),
    case("nested-data-wrong-shape", 400, "nested data does not match shape [2, 4]", with_input(data=[ROW, ROW[:3]])),
    case("nested-data-too-deep", 400, "nested data does not match shape [2, 4]", with_input(data=[[ROW], [ROW]])),
    case("string-in-fp32", 400, "FP32 data must be numbers", with_input(data=[*ROW, 1.0, "2", 3.0, 4.0])),
    case("bool-in-fp32", 400, "FP32 data must be numbers", with_input(data=[*ROW, True, 1.0, 1.0, 1.0])),
    case("null-in-fp32", 400, "FP32 data must be numbers", with_input(data=[*ROW, None, 1.0, 1.0, 1.0])),
    case(
        "fp32-out-of-range",
        400,
        "a value is out of range for FP32",
        with_input(data=[*ROW, 1e39, 1.0, 1.0, 1.0]),
    ),
    case("int8-over-max", 400, "out of range for INT8 [-128, 127]", identity("INT8", [1, 128, 0]), model="inf-int8"),
    case("int8-under-min", 400, "out of range for INT8 [-128, 127]", identity("INT8", [-129, 0, 0]), model="inf-int8"),
    case("float-in-int64", 400, "INT64 data must be integers", identity("INT64", [1, 2.5, 3]), model="inf-int64"),
    case("int64-over-max", 400, "out of range for INT64", identity("INT64", [1, 2**63, 3]), model="inf-int64"),
    case("bool-in-int64", 400, "INT64 data must be integers", identity("INT64", [1, True, 3]), model="inf-int64"),
    case("int-in-bool", 400, "BOOL data must be true or false", identity("BOOL", [1, 0, 1]), model="inf-bool"),
    case("number-in-bytes", 400, "BYTES data must be strings", identity("BYTES", ["a", 1, "c"]), model="inf-bytes"),
    # top-level fields
    case("id-not-a-string", 400, "'id' must be a string", valid(id=42)),
    case("parameters-a-string", 400, "'parameters' must be an object", valid(parameters="fast")),
    case("parameters-a-list", 400, "'parameters' must be an object", valid(parameters=[1])),
    case("parameters-empty-list", 400, "'parameters' must be an object", valid(parameters=[])),
    case("timeout-negative", 400, "parameters.timeout must be a positive integer", valid(parameters={"timeout": -5})),
    case("timeout-zero", 400, "parameters.timeout must be a positive integer", valid(parameters={"timeout": 0})),
    case("timeout-float", 400, "parameters.timeout must be a positive integer", valid(parameters={"timeout": 1.5})),
    case("timeout-string", 400, "parameters.timeout must be a positive integer", valid(parameters={"timeout": "100"})),
    case(
        "binary-output-not-bool",
        400,
        "binary_data_output must be true or false",
        valid(parameters={"binary_data_output": 1}),
    ),
    case("input-parameters-a-list", 400, "'parameters' must be an object", with_input(parameters=[1])),
    # outputs
    case("outputs-not-a-list", 400, "'outputs' must be a list", valid(outputs={"name": "output"})),
    case("output-not-an-object", 400, "each requested output must be an object", valid(outputs=["output"])),
    case(
        "unknown-output",
        400,
        "unknown output 'scores'; the model's outputs are ['output']",
        valid(outputs=[{"name": "scores"}]),
    ),
    case(
        "duplicate-output", 400, "output 'output' is requested more than once", valid(outputs=[{"name": "output"}] * 2)
    ),
    case(
        "output-binary-flag-not-bool",
        400,
        "parameters.binary_data must be true or false",
        valid(outputs=[{"name": "output", "parameters": {"binary_data": "yes"}}]),
    ),
    # the binary tensor data extension
    case(
        "binary-size-without-header",
        400,
        "binary_data_size needs the Inference-Header-Content-Length header",
        sized(32),
    ),
    case(
        "binary-size-mismatch",
        400,
        "binary_data_size is 16 bytes, shape [2, 4] of FP32 needs 32",
        binary(sized(16), FP32_ROWS[:16]),
    ),
    case(
        "binary-size-past-the-end",
        400,
        "binary_data_size 32 runs past the end of the body",
        binary(sized(32), FP32_ROWS[:16]),
    ),
    case("binary-size-negative", 400, "binary_data_size must be a non-negative integer", binary(sized(-1), FP32_ROWS)),
    case(
        "binary-and-data",
        400,
        "give either 'data' or binary_data_size, not both",
        binary(sized(32, data=ROW * 2), FP32_ROWS),
    ),
    case(
        "binary-trailing-bytes",
        400,
        "the body has 4 bytes after the inputs' binary data",
        binary(sized(32), FP32_ROWS + b"tail"),
    ),
    case(
        "binary-nan",
        400,
        "NaN and infinite values are not accepted",
        binary(sized(32), np.array([np.nan, *ROW[1:], *ROW], dtype="<f4").tobytes()),
    ),
    case(
        "binary-bool-not-0-or-1",
        400,
        "BOOL bytes must be 0 or 1",
        binary(
            {"inputs": [{"name": "input", "datatype": "BOOL", "shape": [1, 3], "parameters": {"binary_data_size": 3}}]},
            b"\x01\x00\x02",
        ),
        model="inf-bool",
    ),
    case(
        "binary-bytes-truncated",
        400,
        "binary BYTES data truncated BYTES element length",
        binary(
            {
                "inputs": [
                    {"name": "input", "datatype": "BYTES", "shape": [1, 3], "parameters": {"binary_data_size": 11}}
                ]
            },
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b\x01",
        ),
        model="inf-bytes",
    ),
    case(
        "binary-bytes-too-few-elements",
        400,
        "holds 2 BYTES elements, the shape needs 3",
        binary(
            {
                "inputs": [
                    {"name": "input", "datatype": "BYTES", "shape": [1, 3], "parameters": {"binary_data_size": 10}}
                ]
            },
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
        ),
        model="inf-bytes",
    ),
    case(
        "header-length-over-body",
        400,
        "Inference-Header-Content-Length 100000 is larger than the body",
        orjson.dumps(valid()),
        headers={"inference-header-content-length": "100000"},
    ),
    case(
        "header-length-zero",
        400,
        "Inference-Header-Content-Length 0 (a raw body without a JSON header) is not supported",
        FP32_ROWS,
        headers={"inference-header-content-length": "0", "content-type": "application/octet-stream"},
    ),
    case(
        "header-length-not-a-number",
        400,
        "Inference-Header-Content-Length is not a number",
        orjson.dumps(valid()),
        headers={"inference-header-content-length": "twelve"},
    ),
    case(
        "header-length-negative",
        400,
        "Inference-Header-Content-Length must not be negative",
        orjson.dumps(valid()),
        headers={"inference-header-content-length": "-3"},
    ),
    case(
        "header-length-cuts-the-json",
        400,
        "not valid JSON",
        orjson.dumps(valid()),
        headers={"inference-header-content-length": "10"},
    ),
    # HTTP level
    case("body-over-the-limit", 413, "over the limit of 1024 bytes", valid(id="x" * 2000), max_request_bytes=1024),
    case(
        "content-type-text",
        415,
        "unsupported Content-Type 'text/plain'",
        valid(),
        headers={"content-type": "text/plain"},
    ),
    case(
        "content-type-form",
        415,
        "unsupported Content-Type 'application/x-www-form-urlencoded'",
        b"inputs=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    case("get-on-infer", 405, "method GET not allowed", method="GET", expect_headers={"allow": "POST"}),
    case(
        "post-on-metadata", 405, "method POST not allowed", path="/v2/models/inf-mlp", expect_headers={"allow": "GET"}
    ),
    case(
        "put-on-ready",
        405,
        "method PUT not allowed",
        method="PUT",
        path="/v2/models/inf-mlp/ready",
        expect_headers={"allow": "GET"},
    ),
    case("unknown-endpoint", 404, "no such endpoint", valid(), path="/v2/models/inf-mlp/predict"),
    case("unknown-model", 404, "unknown model 'inf-nothing'", valid(), model="inf-nothing"),
    case("unknown-version", 404, "model 'inf-mlp' has no version '7'", valid(), path=infer_path("inf-mlp", 7)),
    case(
        "version-not-a-number",
        404,
        "model 'inf-mlp' has no version 'latest'",
        valid(),
        path=infer_path("inf-mlp", "latest"),
    ),
    case(
        "pending-version",
        503,
        "model 'inf-mlp' version 2 is pending",
        valid(),
        path=infer_path("inf-mlp", 2),
        expect_headers=NOT_READY,
    ),
    case(
        "no-production-alias",
        503,
        "model 'inf-noalias' has no production version yet",
        valid(),
        model="inf-noalias",
        expect_headers=NOT_READY,
    ),
    case(
        "pending-version-metadata",
        503,
        "version 2 is pending",
        method="GET",
        path="/v2/models/inf-mlp/versions/2",
        expect_headers=NOT_READY,
    ),
    case(
        "pending-version-ready",
        503,
        "version 2 is pending",
        method="GET",
        path="/v2/models/inf-mlp/versions/2/ready",
        expect_headers=NOT_READY,
    ),
    case("model-name-with-nul", 404, "unknown model", valid(), path=infer_path("inf-\x00mlp")),
    case(
        "content-length-not-a-number",
        400,
        "Content-Length is not a number",
        valid(),
        headers={"content-length": "many"},
    ),
]


@dataclass
class Served:
    versions: list[Any]


@pytest.fixture(scope="module")
def served(django_db_blocker: Any, artifact_dir: Path, worker: Workers) -> Iterator[Served]:
    with committed_registry(django_db_blocker, artifact_dir) as registry:
        mlp = build_mlp(4, [8], 3, seed=5)
        versions = [
            registry.add("inf-mlp", mlp, max_batch_size=MAX_BATCH),
            # Uploaded, never validated: version 2 stays pending.
            registry.add("inf-mlp", build_mlp(4, [8], 3, seed=6), validate=False),
            registry.add("inf-int8", build_identity(TensorProto.INT8, [None, 3])),
            registry.add("inf-int64", build_identity(TensorProto.INT64, [None, 3])),
            registry.add("inf-bool", build_identity(TensorProto.BOOL, [None, 3])),
            registry.add("inf-bytes", build_identity(TensorProto.STRING, [None, 3])),
            registry.add("inf-noalias", mlp, production=False),
        ]
        yield Served(versions)


@pytest.fixture
def mlp_gateway(served: Served, gateway: Gateway, worker: Workers) -> Gateway:
    gateway.wait_loaded("inf-mlp", 1, worker)
    return gateway


def enqueued(redis_conn: redis.Redis, served: Served) -> int:
    """Requests ever added to the served versions' streams (XADD count, deletions included)."""
    total = 0
    for version in served.versions:
        key = redis_keys().request_stream(version.id, NORMAL)
        if redis_conn.exists(key):
            total += int(redis_conn.xinfo_stream(key)["entries-added"])
    return total


def test_the_base_request_of_the_table_is_valid(mlp_gateway: Gateway, served: Served, redis_conn: redis.Redis) -> None:
    before = enqueued(redis_conn, served)

    response = mlp_gateway.infer("inf-mlp", valid())

    assert response.status == 200, response.body
    assert response.json()["outputs"][0]["shape"] == [2, 3]
    assert enqueued(redis_conn, served) == before + 1


@pytest.mark.parametrize("bad", CASES)
def test_a_malformed_request_is_refused_with_a_json_error(
    bad: Bad, mlp_gateway: Gateway, served: Served, redis_conn: redis.Redis, settings: Any
) -> None:
    if bad.max_request_bytes is not None:
        settings.TURNOUT = {**settings.TURNOUT, "MAX_REQUEST_BYTES": bad.max_request_bytes}
    method, path, body, headers = bad.request()
    before = enqueued(redis_conn, served)

    response = mlp_gateway.client.loop.run_until_complete(
        asyncio.wait_for(mlp_gateway.client.arequest(method, path, body, headers), timeout=10)
    )

    assert response.status != 500, response.body
    assert response.status == bad.status, response.body
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error"}, payload
    assert isinstance(payload["error"], str), payload
    assert bad.phrase in payload["error"], payload["error"]
    for name, value in bad.expect_headers.items():
        assert response.headers.get(name) == value, response.headers
    assert enqueued(redis_conn, served) == before  # refused before reaching any queue

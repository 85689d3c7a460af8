"""The client's V2 bodies against the gateway's own codec (gateway/protocol.py): what the
client encodes, JSON or binary, the gateway parses into the same tensor bytes; what the
gateway encodes, the client decodes into the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
from turnout_client import tensors

from gateway.protocol import ParsedRequest, encode_response, parse_request

SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "k", "datatype": "INT64", "shape": [-1]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
    ],
    "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ],
    "batch_dim": True,
}
X = np.arange(8, dtype=np.float32).reshape(2, 4) / 7
K = np.array([3, -9], dtype=np.int64)
TEXT = np.array(["héllo", "world"], dtype=object)


def _parse(body: bytes, headers: dict[str, str]) -> ParsedRequest:
    length = headers.get("Inference-Header-Content-Length")
    return parse_request(body, int(length) if length else None, SIGNATURE, max_batch_size=8)


@pytest.mark.parametrize("binary", [False, True])
def test_arrays_reach_the_gateway_as_the_same_tensors(binary: bool) -> None:
    body, headers = tensors.encode_request({"x": X, "k": K, "text": TEXT}, binary=binary, request_id="r1")

    parsed = _parse(body, headers)

    assert headers["Content-Type"] == ("application/octet-stream" if binary else "application/json")
    assert parsed.request_id == "r1"
    by_name = {i.name: i for i in parsed.inputs}
    assert (by_name["x"].datatype, by_name["x"].shape) == ("FP32", [2, 4])
    assert np.frombuffer(by_name["x"].raw, "<f4").tolist() == X.ravel().tolist()
    assert np.frombuffer(by_name["k"].raw, "<i8").tolist() == [3, -9]
    assert by_name["text"].raw == tensors._bytes_elements(np.array([b"h\xc3\xa9llo", b"world"], dtype=object))
    # binary requests ask for binary outputs, all of them
    assert parsed.binary_outputs == ({"y", "label"} if binary else set())


def test_a_v2_json_input_given_as_a_dict_can_travel_as_binary() -> None:
    spec = {"datatype": "FP32", "shape": [1, 4], "data": [[1, 2, 3, 4]]}

    body, headers = tensors.encode_request({"x": spec, "k": K[:1], "text": TEXT[:1]}, binary=True, outputs=["y"])
    parsed = _parse(body, headers)

    assert np.frombuffer(parsed.inputs[0].raw, "<f4").tolist() == [1, 2, 3, 4]
    assert parsed.outputs == ["y"]
    assert parsed.binary_outputs == {"y"}


@pytest.mark.parametrize("binary", [False, True])
def test_the_gateways_answer_decodes_to_the_same_arrays(binary: bool) -> None:
    y = np.array([[0.25, 0.75], [1.5, -2.0]], dtype=np.float32)
    label = np.array([b"cat", b"dog"], dtype=object)
    request = ParsedRequest(
        request_id="r1", inputs=[], outputs=None, binary_outputs={"y", "label"} if binary else set()
    )

    body, header_length = encode_response(
        "m", "3", request, [("y", "FP32", y), ("label", "BYTES", label)], {"arm": "a"}
    )
    headers = {} if header_length is None else {"inference-header-content-length": str(header_length)}
    answer = tensors.decode_response(body, headers)

    assert (answer["model_version"], answer["id"], answer["parameters"]) == ("3", "r1", {"arm": "a"})
    outputs = {o["name"]: o for o in answer["outputs"]}
    if binary:
        assert outputs["y"]["data"].tolist() == y.tolist()
        assert outputs["label"]["data"].tolist() == [b"cat", b"dog"]
    else:
        assert outputs["y"]["data"] == y.ravel().tolist()
        assert outputs["label"]["data"] == ["cat", "dog"]


def test_an_array_of_an_unsupported_dtype_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no V2 datatype for numpy dtype complex64"):
        tensors.encode_request({"x": np.zeros(2, dtype=np.complex64)})

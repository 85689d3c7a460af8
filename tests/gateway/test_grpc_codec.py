"""gRPC messages to the gateway's shapes and back (gateway/grpc_codec.py): the same validation as
HTTP's, every contents field for its datatype, raw contents, and what is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.grpc_codec import to_payload, to_response
from gateway.grpc_generated import grpc_predict_v2_pb2 as pb
from gateway.protocol import ParsedRequest, ProtocolError, parse_payload
from tests.support.v2 import parse_bytes_elements

SIGNATURE: dict[str, Any] = {
    "batch_dim": True,
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
}


def request(**fields: Any) -> Any:
    message = pb.ModelInferRequest(model_name="m", **fields)
    return message


def parsed(message: Any, signature: dict[str, Any] = SIGNATURE) -> ParsedRequest:
    payload, binary = to_payload(message)
    return parse_payload(payload, binary, signature, 8)


def test_raw_contents_become_the_inputs_bytes() -> None:
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    message = request(id="r1", raw_input_contents=[rows.tobytes()])
    message.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    result = parsed(message)
    assert result.request_id == "r1"
    assert result.inputs[0].raw == rows.tobytes()
    assert result.inputs[0].shape == [2, 4]


def test_typed_contents_are_validated_as_json_data() -> None:
    message = request()
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    assert np.frombuffer(parsed(message).inputs[0].raw, dtype=np.float32).tolist() == [1.0, 2.0, 3.0, 4.0]

    short = request()
    tensor = short.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(ProtocolError, match="data has 2 elements, shape \\[1, 4\\] needs 4"):
        parsed(short)


def test_contents_in_the_wrong_field_are_refused() -> None:
    message = request()
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.int_contents.extend([1, 2, 3, 4])
    with pytest.raises(ProtocolError, match=r"FP32 data goes in contents\.fp32_contents, not int_contents") as exc:
        parsed(message)
    assert exc.value.status == 400


def test_raw_and_typed_contents_together_are_refused() -> None:
    message = request(raw_input_contents=[b"\0" * 16])
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ProtocolError, match="not both"):
        parsed(message)


def test_raw_contents_must_be_one_per_input() -> None:
    message = request(raw_input_contents=[b"\0" * 16, b"\0" * 16])
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    with pytest.raises(ProtocolError, match="raw_input_contents has 2 entries for 1 inputs"):
        parsed(message)


def test_raw_contents_of_the_wrong_size_are_refused_as_over_http() -> None:
    message = request(raw_input_contents=[b"\0" * 12])
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    with pytest.raises(ProtocolError, match="is 12 bytes, shape \\[1, 4\\] of FP32 needs 16"):
        parsed(message)


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("INT8", "int_contents", [-128, 127], np.int8),
        ("INT64", "int64_contents", [-(2**40), 2**40], np.int64),
        ("UINT16", "uint_contents", [0, 65535], np.uint16),
        ("UINT64", "uint64_contents", [0, 2**63], np.uint64),
        ("FP64", "fp64_contents", [0.5, -1.5], np.float64),
        ("BOOL", "bool_contents", [True, False], np.bool_),
    ],
)
def test_each_datatype_reads_its_own_contents_field(datatype: str, field: str, values: list[Any], dtype: Any) -> None:
    signature = {"batch_dim": False, "inputs": [{"name": "x", "datatype": datatype, "shape": [2]}], "outputs": []}
    message = request()
    tensor = message.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(tensor.contents, field).extend(values)
    assert np.frombuffer(parsed(message, signature).inputs[0].raw, dtype=dtype).tolist() == values


def test_an_int8_value_out_of_range_is_refused() -> None:
    signature = {"batch_dim": False, "inputs": [{"name": "x", "datatype": "INT8", "shape": [1]}], "outputs": []}
    message = request()
    message.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(ProtocolError, match="out of range for INT8"):
        parsed(message, signature)


def test_bytes_contents_need_not_be_text() -> None:
    signature = {"batch_dim": False, "inputs": [{"name": "s", "datatype": "BYTES", "shape": [2]}], "outputs": []}
    message = request()
    message.inputs.add(name="s", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"\xff\x00", b"ok"])
    raw = parsed(message, signature).inputs[0].raw
    assert parse_bytes_elements(raw) == [b"\xff\x00", b"ok"]


def test_parameters_and_requested_outputs_carry_over() -> None:
    message = request(raw_input_contents=[b"\0" * 16])
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    message.parameters["timeout"].int64_param = 5000
    message.outputs.add(name="output")
    result = parsed(message)
    assert result.timeout_us == 5000
    assert result.outputs == ["output"]
    bad = request(raw_input_contents=[b"\0" * 16])
    bad.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    bad.outputs.add(name="nope")
    with pytest.raises(ProtocolError, match="unknown output 'nope'"):
        parsed(bad)


def test_the_response_carries_outputs_raw_in_the_requests_order() -> None:
    message = request(id="r9", raw_input_contents=[b"\0" * 16])
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    outputs = [("a", "FP32", np.ones((1, 2), np.float32)), ("b", "BYTES", np.array([b"x"], dtype=object))]
    response = to_response("m", "3", parsed(message), outputs, {"arm": "champion", "cache": "miss", "n": 2})
    assert response.model_version == "3"
    assert response.id == "r9"
    assert [o.name for o in response.outputs] == ["a", "b"]
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [1.0, 1.0]
    assert parse_bytes_elements(response.raw_output_contents[1]) == [b"x"]
    assert response.parameters["arm"].string_param == "champion"
    assert response.parameters["n"].int64_param == 2

"""Between the gRPC messages of the Open Inference Protocol and the gateway's own shapes.

A ModelInferRequest becomes the JSON-shaped payload and raw bytes that gateway/protocol.py's
`parse_payload` validates for HTTP too, so both transports obey one set of rules: each
`raw_input_contents` entry is an input's binary data (as the HTTP binary extension's
binary_data_size), typed `contents` are the JSON `data` (BYTES elements travel as binary,
since they need not be text). Outputs always travel as `raw_output_contents`, as Triton sends them.
No Django imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataplane.wire import encode_bytes_tensor, tensor_to_bytes
from gateway.grpc_generated import grpc_predict_v2_pb2 as pb
from gateway.protocol import ParsedRequest, bad, selected_outputs

# Which InferTensorContents field holds each datatype's typed data.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
ALL_FIELDS = frozenset(CONTENTS_FIELD.values())


def parameter_value(parameter: Any) -> Any:
    """An InferParameter's value as JSON would carry it."""
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None


def parameters_of(mapping: Any) -> dict[str, Any]:
    return {name: parameter_value(value) for name, value in mapping.items()}


def set_parameter(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def to_payload(request: Any) -> tuple[dict[str, Any], bytes]:
    """The request as parse_payload takes it: the JSON-shaped payload and the binary data."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise bad(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, in input order, or none"
        )
    blobs: list[bytes] = []
    inputs: list[dict[str, Any]] = []
    for index, tensor in enumerate(request.inputs):
        parameters = parameters_of(tensor.parameters)
        parameters.pop("binary_data_size", None)  # the HTTP extension's: never the client's to set here
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        given = [f.name for f, _ in tensor.contents.ListFields()] if tensor.HasField("contents") else []
        if raw:
            if given:
                raise bad(f"input '{tensor.name}': give its data in contents or raw_input_contents, not both")
            parameters["binary_data_size"] = len(raw[index])
            blobs.append(raw[index])
        else:
            field_name = CONTENTS_FIELD.get(tensor.datatype)
            if field_name is None:
                what = f"unknown datatype {tensor.datatype!r}"
                raise bad(f"input '{tensor.name}': {what}; datatypes are case-sensitive, e.g. FP32")
            wrong = [name for name in given if name != field_name]
            if wrong:
                raise bad(
                    f"input '{tensor.name}': {tensor.datatype} data goes in contents.{field_name}, not {wrong[0]}"
                )
            values = getattr(tensor.contents, field_name)
            if tensor.datatype == "BYTES":
                array = np.empty(len(values), dtype=object)
                array[:] = list(values)
                blob = encode_bytes_tensor(array) if len(values) else b""
                parameters["binary_data_size"] = len(blob)
                blobs.append(blob)
            else:
                item["data"] = list(values)
        if parameters:
            item["parameters"] = parameters
        inputs.append(item)
    payload: dict[str, Any] = {"inputs": inputs}
    parameters = parameters_of(request.parameters)
    parameters.pop("binary_data_output", None)  # outputs always travel raw here
    if parameters:
        payload["parameters"] = parameters
    if request.id:
        payload["id"] = request.id
    if request.outputs:
        payload["outputs"] = [
            {"name": o.name, "parameters": {k: v for k, v in parameters_of(o.parameters).items() if k != "binary_data"}}
            for o in request.outputs
        ]
    return payload, b"".join(blobs)


def to_response(
    model_name: str,
    version: str,
    request: ParsedRequest,
    outputs: list[tuple[str, str, np.ndarray]],
    parameters: dict[str, Any],
) -> Any:
    response = pb.ModelInferResponse(model_name=model_name, model_version=version, id=request.request_id or "")
    for name, value in parameters.items():
        set_parameter(response.parameters[name], value)
    for name, datatype, array in selected_outputs(request, outputs):
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(tensor_to_bytes(datatype, array))
    return response

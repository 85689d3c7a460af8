"""Open Inference Protocol request parsing, validation and response encoding.

No Django imports. Every check happens here, before anything is allocated for
the model or enqueued: a request either becomes tensors that match the
version's signature exactly, or a ProtocolError naming what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from dataplane.wire import NUMPY_DTYPES, decode_bytes_tensor, encode_bytes_tensor, tensor_to_bytes

MAX_RANK = 32
# The most elements a shape may name, counting only its non-zero dimensions: a zero
# makes a tensor empty, so its data checks pass whatever the other dimensions say,
# but the worker cannot build an array whose dimensions multiply past what numpy can
# address ([1, 0, 2**62]). No tensor that fits in a request comes near this.
MAX_ELEMENTS = 2**31 - 1
_INT_LIMITS = {name: np.iinfo(NUMPY_DTYPES[name]) for name in NUMPY_DTYPES if name[:3] in ("INT", "UIN")}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


class ProtocolError(Exception):
    def __init__(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None, failure: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        # A failure of the serving side a fallback may answer (gateway/fallbacks.py): timeout,
        # model_error or overload; empty for the client's own mistakes.
        self.failure = failure


def bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


@dataclass
class ParsedInput:
    name: str
    datatype: str
    shape: list[int]
    raw: bytes  # little-endian row-major bytes (BYTES: length-prefixed elements)


@dataclass
class ParsedRequest:
    request_id: str | None
    inputs: list[ParsedInput]
    outputs: list[str] | None  # None: every output
    binary_outputs: set[str] = field(default_factory=set)
    timeout_us: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else 1


def _count(shape: list[int]) -> int:
    return math.prod(shape)


def _check_shape(name: str, shape: Any, spec_shape: list[int], batch_dim: bool, max_batch: int) -> list[int]:
    if not isinstance(shape, list):
        raise bad(f"input '{name}': shape must be a list of integers")
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise bad(f"input '{name}': shape {shape} must hold non-negative integers")
    if math.prod(dim for dim in shape if dim) > MAX_ELEMENTS:
        raise bad(f"input '{name}': shape {shape} names too many elements (at most {MAX_ELEMENTS}, not counting zeros)")
    if len(shape) != len(spec_shape):
        raise bad(
            f"input '{name}': shape {shape} has rank {len(shape)}, "
            f"the model expects rank {len(spec_shape)} {spec_shape}"
        )
    for axis, (dim, expected) in enumerate(zip(shape, spec_shape, strict=True)):
        if expected != -1 and dim != expected:
            raise bad(f"input '{name}': dimension {axis} is {dim}, the model expects {expected} (shape {spec_shape})")
    if batch_dim:
        if shape[0] < 1:
            raise bad(f"input '{name}': the batch dimension must be at least 1")
        if shape[0] > max_batch:
            raise bad(f"input '{name}': batch of {shape[0]} is over this version's max batch size of {max_batch}")
    return shape


def _flatten(name: str, data: Any, shape: list[int]) -> list[Any]:
    """Row-major elements of `data`, which may be flat or nested exactly as `shape`."""
    if not isinstance(data, list):
        raise bad(f"input '{name}': data must be a list")
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []

    def walk(node: Any, depth: int) -> None:
        if depth == len(shape) - 1:
            if not isinstance(node, list) or len(node) != shape[depth]:
                raise bad(f"input '{name}': nested data does not match shape {shape}")
            flat.extend(node)
            return
        if not isinstance(node, list) or len(node) != shape[depth]:
            raise bad(f"input '{name}': nested data does not match shape {shape}")
        for child in node:
            walk(child, depth + 1)

    if len(shape) < 2:
        raise bad(f"input '{name}': nested data does not match shape {shape}")
    walk(data, 0)
    return flat


def _json_tensor(name: str, datatype: str, data: Any, shape: list[int]) -> bytes:
    flat = _flatten(name, data, shape)
    count = _count(shape)
    if len(flat) != count:
        raise bad(f"input '{name}': data has {len(flat)} elements, shape {shape} needs {count}")
    if not flat:
        return b""
    kinds = set(map(type, flat))
    if datatype == "BYTES":
        if kinds != {str}:
            raise bad(f"input '{name}': BYTES data must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [item.encode() for item in flat]
        return encode_bytes_tensor(array)
    if datatype == "BOOL":
        if kinds != {bool}:
            raise bad(f"input '{name}': BOOL data must be true or false")
        return np.array(flat, dtype=np.bool_).tobytes()
    if datatype in _FLOAT_TYPES:
        if not kinds <= {int, float}:
            raise bad(f"input '{name}': {datatype} data must be numbers")
        # orjson refuses NaN, Infinity and numbers beyond float64, so every value
        # here is finite: a non-finite element after the one conversion is a value
        # too large for the datatype.
        try:
            with np.errstate(over="ignore"):
                narrow = np.array(flat, dtype=NUMPY_DTYPES[datatype])
        except OverflowError:
            raise bad(f"input '{name}': a value is out of range for {datatype}") from None
        if not np.isfinite(narrow).all():
            raise bad(f"input '{name}': a value is out of range for {datatype}")
        return narrow.tobytes()
    # Integer types: no floats, no booleans, no silent wrap-around.
    if kinds != {int}:
        raise bad(f"input '{name}': {datatype} data must be integers")
    limits = _INT_LIMITS[datatype]
    try:
        wide_int = np.array(flat, dtype=np.uint64 if datatype == "UINT64" else np.int64)
    except OverflowError:
        raise bad(f"input '{name}': a value is out of range for {datatype} [{limits.min}, {limits.max}]") from None
    if wide_int.min() < limits.min or wide_int.max() > limits.max:
        raise bad(f"input '{name}': a value is out of range for {datatype} [{limits.min}, {limits.max}]")
    return wide_int.astype(NUMPY_DTYPES[datatype]).tobytes()


def _binary_tensor(name: str, datatype: str, shape: list[int], raw: bytes) -> bytes:
    count = _count(shape)
    if datatype == "BYTES":
        try:
            decode_bytes_tensor(raw, count)
        except ValueError as exc:
            raise bad(f"input '{name}': binary BYTES data {exc}") from None
        return raw
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise bad(
            f"input '{name}': binary_data_size is {len(raw)} bytes, "
            f"shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    if datatype in _FLOAT_TYPES and count and not np.isfinite(np.frombuffer(raw, dtype=dtype)).all():
        raise bad(f"input '{name}': NaN and infinite values are not accepted")
    if datatype == "BOOL" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise bad(f"input '{name}': BOOL bytes must be 0 or 1")
    return raw


def parse_request(
    body: bytes, header_length: int | None, signature: dict[str, Any], max_batch_size: int
) -> ParsedRequest:
    """Validate a V2 infer request against a version's signature."""
    if header_length is None:
        header_bytes, binary = body, b""
    else:
        if header_length == 0:
            raise bad("Inference-Header-Content-Length 0 (a raw body without a JSON header) is not supported")
        if header_length > len(body):
            raise bad(f"Inference-Header-Content-Length {header_length} is larger than the body ({len(body)} bytes)")
        header_bytes, binary = body[:header_length], body[header_length:]
    try:
        payload = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise bad(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise bad("the request body must be a JSON object")
    return parse_payload(payload, binary if header_length is not None else None, signature, max_batch_size)


def parse_payload(
    payload: dict[str, Any], binary: bytes | None, signature: dict[str, Any], max_batch_size: int
) -> ParsedRequest:
    """Validate a request already in the JSON shape, against a version's signature. `binary`: the raw
    tensors its inputs' binary_data_size parameters point into, back to back (None: binary data is
    not allowed; HTTP without Inference-Header-Content-Length). Both transports end here: HTTP
    (parse_request) and gRPC (gateway/grpc_codec.py, which puts raw_input_contents in `binary`)."""
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("'id' must be a string")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise bad("'parameters' must be an object")
    timeout_us = parameters.get("timeout")
    if timeout_us is not None and (type(timeout_us) is not int or timeout_us <= 0):
        raise bad("parameters.timeout must be a positive integer (microseconds)")
    binary_output_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_output_default, bool):
        raise bad("parameters.binary_data_output must be true or false")

    specs = {spec["name"]: spec for spec in signature["inputs"]}
    inputs_json = payload.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise bad("'inputs' must be a non-empty list")
    parsed: list[ParsedInput] = []
    seen: set[str] = set()
    offset = 0
    batch_dim = bool(signature.get("batch_dim"))
    for item in inputs_json:
        if not isinstance(item, dict):
            raise bad("each input must be an object with name, shape, datatype and data")
        name = item.get("name")
        if not isinstance(name, str):
            raise bad("each input needs a 'name' string")
        spec = specs.get(name)
        if spec is None:
            raise bad(f"unknown input '{name}'; the model's inputs are {sorted(specs)}")
        if name in seen:
            raise bad(f"input '{name}' appears more than once")
        seen.add(name)
        datatype = item.get("datatype")
        if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
            raise bad(f"input '{name}': unknown datatype {datatype!r}; datatypes are case-sensitive, e.g. FP32")
        if datatype != spec["datatype"]:
            raise bad(f"input '{name}': datatype {datatype} does not match the model's {spec['datatype']}")
        shape = _check_shape(name, item.get("shape"), spec["shape"], batch_dim, max_batch_size)
        input_params = item.get("parameters", {})
        if not isinstance(input_params, dict):
            raise bad(f"input '{name}': 'parameters' must be an object")
        size = input_params.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise bad(f"input '{name}': binary_data_size needs the Inference-Header-Content-Length header")
            if type(size) is not int or size < 0:
                raise bad(f"input '{name}': binary_data_size must be a non-negative integer")
            if "data" in item:
                raise bad(f"input '{name}': give either 'data' or binary_data_size, not both")
            if offset + size > len(binary):
                raise bad(f"input '{name}': binary_data_size {size} runs past the end of the body")
            raw = _binary_tensor(name, datatype, shape, binary[offset : offset + size])
            offset += size
        else:
            if "data" not in item:
                raise bad(f"input '{name}': 'data' is missing")
            raw = _json_tensor(name, datatype, item["data"], shape)
        parsed.append(ParsedInput(name, datatype, shape, raw))
    if binary is not None and offset != len(binary):
        raise bad(f"the body has {len(binary) - offset} bytes after the inputs' binary data")
    missing = [name for name in specs if name not in seen]
    if missing:
        raise bad(f"missing input(s) {missing}; the model needs {sorted(specs)}")
    if batch_dim and len({p.shape[0] for p in parsed}) > 1:
        raise bad("all inputs must have the same batch size (first dimension)")

    outputs, binary_outputs = _parse_outputs(payload.get("outputs"), signature, binary_output_default)
    return ParsedRequest(request_id, parsed, outputs, binary_outputs, timeout_us, parameters)


def _parse_outputs(
    requested: Any, signature: dict[str, Any], binary_default: bool
) -> tuple[list[str] | None, set[str]]:
    names = [spec["name"] for spec in signature["outputs"]]
    if requested is None:
        return None, set(names) if binary_default else set()
    if not isinstance(requested, list):
        raise bad("'outputs' must be a list")
    chosen: list[str] = []
    binary: set[str] = set()
    for item in requested:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad("each requested output must be an object with a 'name'")
        name = item["name"]
        if name not in names:
            raise bad(f"unknown output '{name}'; the model's outputs are {names}")
        if name in chosen:
            raise bad(f"output '{name}' is requested more than once")
        params = item.get("parameters", {})
        if not isinstance(params, dict):
            raise bad(f"output '{name}': 'parameters' must be an object")
        flag = params.get("binary_data", binary_default)
        if not isinstance(flag, bool):
            raise bad(f"output '{name}': parameters.binary_data must be true or false")
        chosen.append(name)
        if flag:
            binary.add(name)
    return chosen, binary


def _json_data(datatype: str, array: np.ndarray) -> Any:
    if datatype == "BYTES":
        return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in array.ravel()]
    flat = array.ravel()
    return flat if flat.dtype.isnative else flat.astype(flat.dtype.newbyteorder("="))


def selected_outputs(
    request: ParsedRequest, outputs: list[tuple[str, str, np.ndarray]]
) -> list[tuple[str, str, np.ndarray]]:
    """The outputs the request asked for, in its order (all of them when it named none)."""
    selected = request.outputs
    if selected is None:
        return outputs
    order = {name: index for index, name in enumerate(selected)}
    return sorted((o for o in outputs if o[0] in order), key=lambda o: order[o[0]])


def encode_response(
    model_name: str,
    model_version: str,
    request: ParsedRequest,
    outputs: list[tuple[str, str, np.ndarray]],
    parameters: dict[str, Any],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    outputs = selected_outputs(request, outputs)
    entries = []
    blobs = []
    for name, datatype, array in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in request.binary_outputs:
            raw = tensor_to_bytes(datatype, array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _json_data(datatype, array)
        entries.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.request_id is not None:
        body["id"] = request.request_id
    if parameters:
        body["parameters"] = parameters
    body["outputs"] = entries
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)

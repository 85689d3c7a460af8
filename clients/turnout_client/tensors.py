"""Open Inference Protocol (V2) request bodies, JSON or with the binary data extension, and
their answers. numpy is needed only for arrays and binary tensors (`pip install turnout-client[numpy]`)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

# V2 datatype -> numpy dtype (little-endian, as the wire format is).
DTYPES = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError("arrays and binary tensors need numpy: pip install 'turnout-client[numpy]'") from None
    return numpy


def datatype_of(array: Any) -> str:
    np = _numpy()
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if np.dtype(dtype) == array.dtype.newbyteorder("<") or np.dtype(dtype) == array.dtype:
            return name
    raise ValueError(f"no V2 datatype for numpy dtype {array.dtype}")


def _bytes_elements(array: Any) -> bytes:
    out = bytearray()
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        out += struct.pack("<I", len(raw)) + raw
    return bytes(out)


def _tensor(name: str, value: Any, binary: bool) -> tuple[dict[str, Any], bytes]:
    """One input's JSON entry, and its raw bytes when it travels as binary."""
    if isinstance(value, Mapping):
        entry = {"name": name, **value}
        if binary and "data" in entry:
            np = _numpy()
            dtype = object if entry["datatype"] == "BYTES" else DTYPES[entry["datatype"]]
            value = np.asarray(entry.pop("data"), dtype=dtype).reshape(entry["shape"])
        else:
            return entry, b""
    np = _numpy()
    array = np.asarray(value)
    datatype = datatype_of(array)
    entry = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if not binary:
        flat = array.reshape(-1)
        text = [x.decode() if isinstance(x, bytes) else str(x) for x in flat] if datatype == "BYTES" else None
        entry["data"] = text if text is not None else flat.tolist()
        return entry, b""
    raw = _bytes_elements(array) if datatype == "BYTES" else array.astype(DTYPES[datatype]).tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return entry, raw


def encode_request(
    inputs: Mapping[str, Any],
    *,
    outputs: list[str] | None = None,
    binary: bool = False,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and content headers of an inference request."""
    entries, chunks = [], []
    for name, value in inputs.items():
        entry, raw = _tensor(name, value, binary)
        entries.append(entry)
        chunks.append(raw)
    header: dict[str, Any] = {"inputs": entries}
    if request_id is not None:
        header["id"] = request_id
    if outputs:
        header["outputs"] = [{"name": o, **({"parameters": {"binary_data": True}} if binary else {})} for o in outputs]
    if parameters or (binary and not outputs):
        header["parameters"] = {**(parameters or {}), **({"binary_data_output": True} if binary else {})}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    if not binary:
        return encoded, {"Content-Type": "application/json"}
    return encoded + b"".join(chunks), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(encoded)),
    }


def decode_response(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """The answer; binary outputs become numpy arrays in `data`."""
    length = headers.get("inference-header-content-length")
    if length is None:
        return dict(json.loads(body))
    split = int(length)
    answer = dict(json.loads(body[:split]))
    offset = split
    for output in answer.get("outputs", []):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        raw = body[offset : offset + size]
        offset += size
        np = _numpy()
        if output["datatype"] == "BYTES":
            items, at = [], 0
            while at < len(raw):
                (n,) = struct.unpack_from("<I", raw, at)
                items.append(raw[at + 4 : at + 4 + n])
                at += 4 + n
            output["data"] = np.array(items, dtype=object).reshape(output["shape"])
        else:
            output["data"] = np.frombuffer(raw, dtype=DTYPES[output["datatype"]]).reshape(output["shape"])
    return answer

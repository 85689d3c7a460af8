"""The Redis message formats between the V2 gateway and the workers. No Django imports.

A request is one stream entry (XADD) whose fields carry a small JSON header and
each input tensor as raw little-endian bytes: tensors are never JSON lists on
the broker. A reply is one bytes value pushed on the gateway's reply list:
a 4-byte header length, the JSON header, then the output tensors back to back.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

# V2 datatype -> numpy dtype (little-endian, as the binary extension specifies).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")
# A W3C trace context, version 00 (what the gateway writes); anything else is dropped on decode.
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES elements as the binary extension lays them out: 4-byte length, then the bytes."""
    parts = []
    for item in array.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def decode_bytes_tensor(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Inverse of encode_bytes_tensor; ValueError if the buffer does not hold exactly `count` elements.

    Elements come back as `str` (UTF-8; invalid sequences replaced): onnxruntime's
    string tensors take `str`, and would turn `bytes` into their repr.
    """
    view = memoryview(raw)
    items: list[str] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise ValueError("truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise ValueError("BYTES element runs past the end of its buffer")
        items.append(bytes(view[offset : offset + length]).decode("utf-8", "replace"))
        offset += length
    if len(items) != count:
        raise ValueError(f"holds {len(items)} BYTES elements, the shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def tensor_to_bytes(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return encode_bytes_tensor(array)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def tensor_from_bytes(datatype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    count = 1
    for dim in shape:
        count *= dim
    if datatype == "BYTES":
        return decode_bytes_tensor(raw, count).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ValueError(f"holds {len(raw)} bytes, the shape {shape} of {datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


@dataclass
class WireRequest:
    """One inference request as the worker sees it."""

    request_id: str
    reply_to: str
    deadline_ms: int
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[str] | None = None
    entry_id: bytes = b""
    stream: str = ""  # the stream (priority level) the entry was read from: ids are unique per stream
    enqueued_ms: float = 0.0  # wall clock, ms with µs precision (whole ms from older gateways)
    traceparent: str | None = None  # the gateway's span, when the request is sampled for tracing

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


def encode_request(
    request_id: str,
    reply_to: str,
    deadline_ms: int,
    enqueued_ms: float,
    tensors: list[tuple[str, str, list[int], bytes]],
    outputs: list[str] | None,
    traceparent: str | None = None,
) -> dict[bytes, bytes]:
    """Stream entry fields for XADD. `tensors`: (name, datatype, shape, raw bytes); `traceparent`
    only for a request sampled for tracing (observability/tracing.py)."""
    header: dict[str, Any] = {
        "i": request_id,
        "r": reply_to,
        "d": deadline_ms,
        "e": enqueued_ms,
        "o": outputs,
        "t": [[name, datatype, shape] for name, datatype, shape, _ in tensors],
    }
    if traceparent is not None:
        header["tp"] = traceparent
    fields = {b"h": orjson.dumps(header)}
    for index, (_, _, _, raw) in enumerate(tensors):
        fields[b"%d" % index] = raw
    return fields


class MalformedRequest(ValueError):
    """A stream entry the worker cannot decode; `reply_to` and `request_id` are set when the
    header was readable enough to answer it."""

    def __init__(self, message: str, request_id: str | None = None, reply_to: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.reply_to = reply_to


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(type(dim) is int and dim >= 0 for dim in value):
        raise ValueError(f"shape {value!r} is not a list of non-negative integers")
    return value


def decode_request(entry_id: bytes, fields: dict[bytes, bytes], stream: str = "") -> WireRequest:
    """The request in a stream entry; MalformedRequest if it cannot be decoded."""
    try:
        header = orjson.loads(fields[b"h"])
        request_id, reply_to = header["i"], header["r"]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRequest(f"unreadable header: {exc!r}") from None
    if not isinstance(request_id, str) or not isinstance(reply_to, str) or not reply_to:
        raise MalformedRequest("the header's request id or reply address is not a string")
    try:
        tensors = header["t"]
        if not isinstance(tensors, list) or not tensors:
            raise ValueError("no input tensors in the header's 't'")
        deadline_ms, enqueued_ms, outputs = header["d"], header.get("e", 0), header["o"]
        if type(deadline_ms) is not int or not isinstance(enqueued_ms, int | float):
            raise ValueError("the header's deadline or enqueue time is not a number")
        if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
            raise ValueError("the header's outputs are not a list of names")
        inputs: dict[str, np.ndarray] = {}
        datatypes: dict[str, str] = {}
        for index, (name, datatype, shape) in enumerate(tensors):
            if not isinstance(name, str) or name in inputs:
                raise ValueError(f"input name {name!r} is not a string, or repeated")
            if datatype not in NUMPY_DTYPES:
                raise ValueError(f"unknown datatype {datatype!r}")
            inputs[name] = tensor_from_bytes(datatype, _shape(shape), fields[b"%d" % index])
            datatypes[name] = datatype
    # Whatever the bytes hold, the answer is a reply, not an exception in the batching loop.
    except Exception as exc:
        raise MalformedRequest(f"{type(exc).__name__}: {exc}", request_id, reply_to) from None
    return WireRequest(
        request_id=request_id,
        reply_to=reply_to,
        deadline_ms=deadline_ms,
        inputs=inputs,
        datatypes=datatypes,
        outputs=outputs,
        entry_id=entry_id,
        stream=stream,
        enqueued_ms=enqueued_ms,
        traceparent=_traceparent(header.get("tp")),
    )


def _traceparent(value: Any) -> str | None:
    """A malformed trace context costs the request its trace, never its answer."""
    if isinstance(value, str) and TRACEPARENT.fullmatch(value):
        return value
    return None


@dataclass
class WireReply:
    request_id: str
    status: int = 200
    error: str = ""
    outputs: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # (name, datatype, array)
    batch_size: int = 0
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    provider: str = ""
    worker: str = ""
    stages: list[tuple[str, float]] = field(default_factory=list)  # a pipeline's stages: (name, ms)


def encode_reply(reply: WireReply) -> bytes:
    raws = [tensor_to_bytes(datatype, array) for _, datatype, array in reply.outputs]
    fields: dict[str, Any] = {
        "i": reply.request_id,
        "s": reply.status,
        "e": reply.error,
        "b": reply.batch_size,
        "q": round(reply.queue_ms, 3),
        "c": round(reply.compute_ms, 3),
        "p": reply.provider,
        "w": reply.worker,
        "o": [
            [name, datatype, list(array.shape), len(raw)]
            for (name, datatype, array), raw in zip(reply.outputs, raws, strict=True)
        ],
    }
    if reply.stages:
        fields["g"] = [[name, round(ms, 3)] for name, ms in reply.stages]
    header = orjson.dumps(fields)
    return b"".join([_LENGTH.pack(len(header)), header, *raws])


def decode_reply_id(blob: bytes) -> str:
    """Only the request id, to route a reply without decoding its tensors."""
    (length,) = _LENGTH.unpack_from(blob, 0)
    return str(orjson.loads(blob[4 : 4 + length])["i"])


def decode_reply(blob: bytes) -> WireReply:
    (length,) = _LENGTH.unpack_from(blob, 0)
    header = orjson.loads(blob[4 : 4 + length])
    view = memoryview(blob)
    offset = 4 + length
    outputs = []
    for name, datatype, shape, size in header["o"]:
        outputs.append((name, datatype, tensor_from_bytes(datatype, shape, view[offset : offset + size])))
        offset += size
    return WireReply(
        request_id=header["i"],
        status=header["s"],
        error=header["e"],
        outputs=outputs,
        batch_size=header["b"],
        queue_ms=header["q"],
        compute_ms=header["c"],
        provider=header["p"],
        worker=header["w"],
        stages=[(str(name), float(ms)) for name, ms in header.get("g", ())],
    )

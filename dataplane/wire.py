"""The Redis message formats between the V2 gateway and the workers. No Django imports.

A request is one stream entry (XADD) whose fields carry a small JSON header and
each input tensor as raw little-endian bytes: tensors are never JSON lists on
the broker. A reply is one bytes value pushed on the gateway's reply list:
a 4-byte header length, the JSON header, then the output tensors back to back.
"""

from __future__ import annotations

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
    enqueued_ms: float = 0.0  # wall clock, ms with µs precision (whole ms from older gateways)

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
) -> dict[bytes, bytes]:
    """Stream entry fields for XADD. `tensors`: (name, datatype, shape, raw bytes)."""
    header = {
        "i": request_id,
        "r": reply_to,
        "d": deadline_ms,
        "e": enqueued_ms,
        "o": outputs,
        "t": [[name, datatype, shape] for name, datatype, shape, _ in tensors],
    }
    fields = {b"h": orjson.dumps(header)}
    for index, (_, _, _, raw) in enumerate(tensors):
        fields[b"%d" % index] = raw
    return fields


def decode_request(entry_id: bytes, fields: dict[bytes, bytes]) -> WireRequest:
    header = orjson.loads(fields[b"h"])
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, (name, datatype, shape) in enumerate(header["t"]):
        inputs[name] = tensor_from_bytes(datatype, shape, fields[b"%d" % index])
        datatypes[name] = datatype
    return WireRequest(
        request_id=header["i"],
        reply_to=header["r"],
        deadline_ms=header["d"],
        inputs=inputs,
        datatypes=datatypes,
        outputs=header["o"],
        entry_id=entry_id,
        enqueued_ms=header.get("e", 0),
    )


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


def encode_reply(reply: WireReply) -> bytes:
    raws = [tensor_to_bytes(datatype, array) for _, datatype, array in reply.outputs]
    header = orjson.dumps(
        {
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
    )
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
    )

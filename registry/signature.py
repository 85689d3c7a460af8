"""A model's input/output signature in Open Inference Protocol (V2) terms. No Django imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

# onnxruntime's type strings for the tensor types the Open Inference Protocol can carry.
_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class TensorSpec(TypedDict):
    name: str
    datatype: str  # a V2 datatype: "FP32", "INT64", "BYTES", ...
    shape: list[int]  # -1 for a dynamic or symbolic dimension


class Signature(TypedDict):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch_dim: bool  # every input and output has rank >= 1 and a dynamic first dimension


def ort_type_to_datatype(ort_type: str) -> str | None:
    """The V2 datatype for an onnxruntime type string ("tensor(float)" -> "FP32"); None if it has none."""
    return _DATATYPES.get(ort_type)


def extract_signature(session: Any) -> Signature:
    """Read the signature of a loaded onnxruntime session; ValueError with a readable reason if V2 can't carry it.

    The shapes are onnxruntime's, which merge what the file declares with what onnxruntime
    infers. A rank is always known: onnx.checker refuses graph inputs and outputs without a shape.
    """
    inputs = [_spec("input", arg) for arg in session.get_inputs()]
    outputs = [_spec("output", arg) for arg in session.get_outputs()]
    batch_dim = all(len(spec["shape"]) >= 1 and spec["shape"][0] == -1 for spec in inputs + outputs)
    return {"inputs": inputs, "outputs": outputs, "batch_dim": batch_dim}


def _spec(kind: str, arg: Any) -> TensorSpec:
    datatype = ort_type_to_datatype(arg.type)
    if datatype is None and arg.type.startswith("tensor("):
        raise ValueError(
            f"{kind} '{arg.name}' has type {arg.type}, which has no Open Inference Protocol datatype: "
            "use bool, int8 to int64, uint8 to uint64, float16, float, double or string"
        )
    if datatype is None:
        raise ValueError(
            f"{kind} '{arg.name}' has type {arg.type}, but the Open Inference Protocol can only carry tensors: "
            "for a scikit-learn classifier, convert with options={'zipmap': False} to get a probabilities tensor"
        )
    shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape]
    return {"name": arg.name, "datatype": datatype, "shape": shape}


def _shape_fits(given: Sequence[int], expected: Sequence[int]) -> bool:
    return len(given) == len(expected) and all(
        e == -1 or g == -1 or g == e for g, e in zip(given, expected, strict=True)
    )


def incompatibility(
    served: Mapping[str, Any], fallback: Mapping[str, Any], *, here: str = "here", there: str = "there"
) -> str | None:
    """Why a version with signature `fallback` cannot answer requests made for `served`, or None.

    The one rule of signature compatibility: fallback versions (registry/fallback_services.py) and
    versions taking a rollout's traffic beside the production version (rollouts/services.py) follow it.
    It must take every input the served version takes, with the same datatype and a shape that
    fits, and nothing more; and give every output the served version gives, with the same datatype.
    `here` and `there` name the served version and the other one in the reason.
    """
    wanted = {t["name"]: t for t in served.get("inputs", [])}
    taken = {t["name"]: t for t in fallback.get("inputs", [])}
    for name, tensor in wanted.items():
        other = taken.get(name)
        if other is None:
            return f"it has no input '{name}'"
        if other["datatype"] != tensor["datatype"]:
            return f"input '{name}' is {other['datatype']} {there}, {tensor['datatype']} {here}"
        if not _shape_fits(tensor["shape"], other["shape"]):
            return f"input '{name}' has shape {other['shape']} {there}, {tensor['shape']} {here}"
    extra = sorted(set(taken) - set(wanted))
    if extra:
        return f"it needs input(s) this model's requests do not carry: {', '.join(extra)}"
    given = {t["name"]: t for t in fallback.get("outputs", [])}
    for tensor in served.get("outputs", []):
        other = given.get(tensor["name"])
        if other is None:
            return f"it has no output '{tensor['name']}'"
        if other["datatype"] != tensor["datatype"]:
            return f"output '{tensor['name']}' is {other['datatype']} {there}, {tensor['datatype']} {here}"
    return None

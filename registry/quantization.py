"""Converting one ONNX file to a cheaper precision: dynamic INT8 weights (onnxruntime's
`quantize_dynamic`) or FP16 (onnxruntime's `convert_float_to_float16`, keeping FP32
inputs and outputs so clients send and receive what they did for the parent).

No Django imports: `run_in_child` runs this module as `python -m registry.quantization` in a
bare child process under the validator's memory and CPU limits (registry/validation.py), for
the same reason validation does: the converters load the whole model, and a broken one can
make them allocate without bound or crash.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from registry.validation import ValidationOutcome, first_line, report, run_module_in_child

INT8_DYNAMIC = "int8_dynamic"
FP16 = "fp16"
METHODS = {
    INT8_DYNAMIC: "dynamic INT8 (weights stored as INT8, activations quantized at run time)",
    FP16: "FP16 (weights and arithmetic in half precision; inputs and outputs stay FP32)",
}
TOOL = f"onnxruntime {ort.__version__}"

# Initializer types each method produces: a result without any of them changed nothing.
_PRODUCES = {
    INT8_DYNAMIC: {onnx.TensorProto.INT8, onnx.TensorProto.UINT8},
    FP16: {onnx.TensorProto.FLOAT16},
}


class Unconvertible(Exception):
    """The model cannot be converted; the message is the outcome's reason."""


def convert_file(source: str, target: str, method: str) -> ValidationOutcome:
    """Write `source` converted by `method` to `target`; never raises for a bad model."""
    outcome = ValidationOutcome(ok=False)
    try:
        _convert(source, target, method, outcome.log)
    except Unconvertible as refusal:
        outcome.reason = str(refusal)
        return outcome
    outcome.ok = True
    return outcome


def _convert(source: str, target: str, method: str, log: list[str]) -> None:
    if method not in METHODS:
        raise Unconvertible(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    model = _load(source)
    before = {_type_name(t) for t in _float_initializer_types(model)}
    log.append(f"source: {os.path.getsize(source)} bytes, float weights: {', '.join(sorted(before)) or 'none'}")
    ops = ", ".join(sorted({node.op_type for node in model.graph.node}))
    if not before:
        raise Unconvertible(
            f"the model has no floating-point weight tensors for {TOOL} to convert (its operators: {ops}): "
            f"{method} would leave it unchanged"
        )
    try:
        if method == INT8_DYNAMIC:
            _quantize_int8(source, target, log)
        else:
            _to_fp16(model, target, log)
    except MemoryError:
        raise
    except Exception as error:  # the converters raise whatever their graph walk hits
        raise Unconvertible(
            f"{TOOL} could not convert the model to {method}: {type(error).__name__}: {first_line(error)}"
        ) from None
    converted = onnx.load(target, load_external_data=False)
    made = {t.data_type for t in converted.graph.initializer} & _PRODUCES[method]
    if not made:
        raise Unconvertible(
            f"{TOOL} found nothing to convert to {method} in this model: its operators ({ops}) "
            "are not ones this method handles, so the result would be the same model"
        )
    log.append(f"converted: {os.path.getsize(target)} bytes, {len(converted.graph.node)} nodes")


def _load(path: str) -> onnx.ModelProto:
    try:
        model = onnx.load(path, load_external_data=False)
    except MemoryError:
        raise
    except Exception as error:  # protobuf's DecodeError and friends
        raise Unconvertible(
            f"the artifact is not a valid ONNX model: {first_line(error) or type(error).__name__}"
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise Unconvertible("the artifact is not a valid ONNX model: it has no ir_version or no graph")
    return model


def _float_initializer_types(model: onnx.ModelProto) -> set[int]:
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}
    return {t.data_type for t in model.graph.initializer if t.data_type in floats}


def _type_name(data_type: int) -> str:
    return str(onnx.TensorProto.DataType.Name(data_type))


def _quantize_int8(source: str, target: str, log: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="turnout-quant-") as scratch:
        prepared = str(Path(scratch) / "prepared.onnx")
        # Shape inference and graph fusion first, as onnxruntime recommends; symbolic shape
        # inference needs sympy, which Turnout does not install.
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        log.append("pre-processed: onnx shape inference and onnxruntime graph optimization")
        quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=False)
    log.append(f"quantize_dynamic ({TOOL}): weights QInt8, per-tensor")


def _to_fp16(model: onnx.ModelProto, target: str, log: list[str]) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=True))
    # The converter appends the casts of the kept FP32 inputs at the end of the graph, which
    # onnx.checker refuses: nodes must be in topological order.
    converted.topological_sort()
    onnx.save(converted.model, target)
    log.append(f"convert_float_to_float16 ({TOOL}): inputs and outputs kept FP32")


def run_in_child(source: str, target: str, method: str, timeout_s: float, memory_bytes: int) -> ValidationOutcome:
    """`convert_file` in a child process under an address-space and CPU limit; never raises for a bad model."""
    return run_module_in_child(
        "registry.quantization", [source, target, method], timeout_s, memory_bytes, [], "conversion"
    )


def _main(argv: list[str]) -> int:
    source, target, method, memory_bytes, cpu_s = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    # Limited before the file is read, as in registry.validation._main.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    return report(lambda: convert_file(source, target, method), "conversion")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

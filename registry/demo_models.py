"""Small real ONNX models for the quick start, the tests and the benchmark. No Django imports.

Every builder returns the serialized model and gives equal bytes for equal arguments, so a
model uploaded twice has one checksum.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRODUCER = "turnout-demo"
PRODUCER_VERSION = "1"


def build_mlp(
    input_dim: int,
    hidden: Sequence[int],
    output_dim: int,
    *,
    seed: int = 0,
    input_name: str = "input",
    output_name: str = "output",
    opset: int = 17,
) -> bytes:
    """FP32 [batch, input_dim] -> (Gemm + Relu) per hidden width -> Gemm -> FP32 [batch, output_dim]."""
    rng = np.random.default_rng(seed)
    widths = [input_dim, *hidden, output_dim]
    nodes, initializers = [], []
    current = input_name
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        last = layer == len(widths) - 2
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"fc{layer}.weight"),
            numpy_helper.from_array(bias, f"fc{layer}.bias"),
        ]
        gemm_out = output_name if last else f"fc{layer}.out"
        nodes.append(
            helper.make_node("Gemm", [current, f"fc{layer}.weight", f"fc{layer}.bias"], [gemm_out], name=f"fc{layer}")
        )
        current = gemm_out
        if not last:
            current = f"relu{layer}.out"
            nodes.append(helper.make_node("Relu", [gemm_out], [current], name=f"relu{layer}"))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", input_dim])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", output_dim])],
        initializers,
    )
    return _serialize(graph, opset)


def build_mlp_small() -> bytes:
    """The benchmark's small model: 64 -> 256 -> 256 -> 10."""
    return build_mlp(64, [256, 256], 10)


def build_mlp_large() -> bytes:
    """The benchmark's large model: 512 -> 2048 -> 2048 -> 2048 -> 1000 (about 46 MB)."""
    return build_mlp(512, [2048, 2048, 2048], 1000)


def build_identity(elem_type: int, shape: Sequence[int | None], *, opset: int = 17) -> bytes:
    """One input "input" passed through Identity to one output "output"; None in `shape` is a dynamic dimension.

    `elem_type` is an `onnx.TensorProto` data type such as `TensorProto.FLOAT16`.
    """
    dims: list[int | str] = [f"dim{i}" if dim is None else dim for i, dim in enumerate(shape)]
    if dims and shape[0] is None:
        dims[0] = "batch"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"], name="identity")],
        "identity",
        [helper.make_tensor_value_info("input", elem_type, dims)],
        [helper.make_tensor_value_info("output", elem_type, dims)],
    )
    return _serialize(graph, opset)


def build_iris_classifier(*, zipmap: bool = False) -> bytes:
    """Logistic regression on the iris data set bundled with scikit-learn, converted by skl2onnx.

    Outputs "label" (INT64 [-1]) and "probabilities" (FP32 [-1, 3]). With `zipmap=True` it is
    skl2onnx's default output instead, a sequence of maps the Open Inference Protocol cannot
    carry: the registry refuses it, which is what the tests need it for.
    """
    # Imported here: scikit-learn and skl2onnx are demo extras, absent from production workers.
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    classifier = LogisticRegression(max_iter=500, random_state=0).fit(features.astype(np.float32), labels)
    model = to_onnx(
        classifier,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={"zipmap": zipmap},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # skl2onnx 1.20 lists the default domain twice; keep the first entry per domain.
    opsets = {entry.domain: entry.version for entry in reversed(model.opset_import)}
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items()))
    return model.SerializeToString(deterministic=True)


def _serialize(graph: onnx.GraphProto, opset: int) -> bytes:
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        # The oldest IR version that carries this opset, so older onnxruntime releases load it too.
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    return model.SerializeToString(deterministic=True)

"""Small ONNX graphs to build pipelines from in tests: each is one stage, FP32 with a
dynamic batch dimension, with input and output names chosen per test."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from registry.demo_models import _serialize


def build_affine(
    dim: int, scale: float, shift: float, *, x: str = "x", y: str = "y", out_dim: int | None = None
) -> bytes:
    """y = x * scale + shift, [-1, dim] -> [-1, out_dim or dim] (out_dim != dim repeats or cuts
    columns through a MatMul)."""
    out = out_dim or dim
    weights = np.zeros((dim, out), dtype=np.float32)
    for column in range(out):
        weights[column % dim, column] = scale
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [x, "w"], ["scaled"]),
            helper.make_node("Add", ["scaled", "b"], [y]),
        ],
        "affine",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", out])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.full(out, shift, np.float32), "b")],
    )
    return _serialize(graph, 17)


def build_slow(dim: int, iterations: int, *, x: str = "x", y: str = "y") -> bytes:
    """y = x, after `iterations` rounds of a [dim, dim] MatMul in a Loop: a stage as slow as you make it."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "w"], ["state_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, ["batch", dim]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["batch", dim]),
        ],
        [numpy_helper.from_array(np.eye(dim, dtype=np.float32), "w")],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trips", "go", x], ["looped"], body=body),
            helper.make_node("Identity", [x], [y]),
        ],
        "slow",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", dim])],
        [
            helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("looped", TensorProto.FLOAT, ["batch", dim]),
        ],
        [
            numpy_helper.from_array(np.array(iterations, dtype=np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "go"),
        ],
    )
    return _serialize(graph, 17)

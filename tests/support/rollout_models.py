"""The models the rollout tests serve, all with the champion's signature (FP32 [batch, 4] ->
FP32 [batch, 3]), and a request for them: a champion, a version that fails on part of its
inputs, and one about a thousand times slower."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from registry.demo_models import build_mlp

FEATURES = 4
CLASSES = 3


def champion_model(seed: int = 0) -> bytes:
    """FP32 [batch, 4] -> FP32 [batch, 3]: a small MLP."""
    return build_mlp(FEATURES, [8], CLASSES, seed=seed)


def fails_on_large_first_feature(table_rows: int = 10) -> bytes:
    """Same signature as `champion_model`, but a Gather indexed by the first feature: a row whose first
    value is outside [0, table_rows) makes onnxruntime fail at run time (index out of bounds), the others
    run. The worker answers such a request 400 "the model could not run on this input"."""
    table = np.arange(table_rows * CLASSES, dtype=np.float32).reshape(table_rows, CLASSES)
    nodes = [
        helper.make_node("Slice", ["input", "zero", "one", "one_axis"], ["first"]),  # [batch, 1]
        helper.make_node("Cast", ["first"], ["index2d"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["index2d", "one_axis"], ["index"]),  # [batch]
        helper.make_node("Gather", ["table", "index"], ["output"], axis=0),  # [batch, 3]
    ]
    graph = helper.make_graph(
        nodes,
        "fails-on-some-inputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis"),
        ],
    )
    return _serialize(graph)


def much_slower(size: int = 768, rounds: int = 2) -> bytes:
    """Same signature as `champion_model`, about a thousand times the compute (tens of milliseconds):
    `rounds` products of [size, size] matrices that depend on the input, so nothing is folded away at
    load time. A few megabytes, unlike an MLP that slow."""
    weights = (np.random.default_rng(0).standard_normal((size, size)) / size).astype(np.float32)
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
        helper.make_node("Mul", ["weights", "total"], ["product0"]),
    ]
    for i in range(rounds):
        nodes.append(helper.make_node("MatMul", [f"product{i}", "weights"], [f"product{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"product{rounds}"], ["mean"], keepdims=0),
        helper.make_node("Slice", ["input", "zero", "three", "one"], ["head"]),  # [batch, 3]
        helper.make_node("Mul", ["mean", "tiny"], ["nudge"]),
        helper.make_node("Add", ["head", "nudge"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "much-slower",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        [
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([CLASSES], dtype=np.int64), "three"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array(1e-30, dtype=np.float32), "tiny"),
        ],
    )
    return _serialize(graph)


def slow_on_large_first_feature(width: int = 256) -> bytes:
    """Same signature as `champion_model`, as slow as its first feature asks: |first| rounds of a
    [1, width] x [width, width] product in a Loop (tens of microseconds each), so validation's small
    inputs run at once and a request with a first feature of thousands takes a fraction of a second.
    The output is the first three features (plus a nudge too small to show, so the Loop stays in)."""
    weights = (np.random.default_rng(0).standard_normal((width, width)) / width).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "weights"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),
        ],
        "round",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, width]),
        ],
        [numpy_helper.from_array(weights, "weights")],
    )
    nodes = [
        helper.make_node("Slice", ["input", "zero", "one", "one"], ["first"]),  # [batch, 1]
        helper.make_node("ReduceMax", ["first"], ["largest"], keepdims=0),
        helper.make_node("Abs", ["largest"], ["rounds_f"]),
        helper.make_node("Cast", ["rounds_f"], ["rounds"], to=TensorProto.INT64),
        helper.make_node("Loop", ["rounds", "go", "start"], ["looped"], body=body),
        helper.make_node("ReduceMean", ["looped"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "tiny"], ["nudge"]),
        helper.make_node("Slice", ["input", "zero", "three", "one"], ["head"]),  # [batch, 3]
        helper.make_node("Add", ["head", "nudge"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow-on-large-inputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        [
            numpy_helper.from_array(np.full((1, width), 0.5, dtype=np.float32), "start"),
            numpy_helper.from_array(np.array(True), "go"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([CLASSES], dtype=np.int64), "three"),
            numpy_helper.from_array(np.array(1e-30, dtype=np.float32), "tiny"),
        ],
    )
    return _serialize(graph)


def _serialize(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="turnout-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def row(first: float = 1.0) -> list[float]:
    return [first, 0.5, -0.25, 2.0]


def body(first: float = 1.0, request_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, FEATURES], "data": row(first)}]
    }
    if request_id is not None:
        payload["id"] = request_id
    return payload

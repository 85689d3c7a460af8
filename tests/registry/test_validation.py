"""Validation of one uploaded ONNX file: what passes, with which signature, and every refusal
with a reason the uploader can act on. Real models, real onnxruntime, real child processes."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry.demo_models import build_identity, build_iris_classifier, build_mlp, build_mlp_small
from registry.validation import ort_type_to_datatype, run_in_child, validate_file

LIMIT = 100 * 1024**2
# Enough for onnxruntime and the demo models in the child (they pass under 384 MiB), far below
# the 10 GB the memory hog asks for.
CHILD_MEMORY = 1536 * 1024**2


def write(tmp_path: Path, data: bytes, name: str = "model.onnx") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def serialize(graph: onnx.GraphProto) -> bytes:
    # IR 8 is what opset 17 needs; onnx 1.23's default (IR 14) is newer than onnxruntime 1.31 loads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def with_external_weight(location: str) -> bytes:
    """input + w, where w claims its four floats live in another file."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "w"], ["output"])],
        "external",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return serialize(graph)


def memory_hog() -> bytes:
    """Valid ONNX with no inputs whose output needs 50000 x 50000 floats (10 GB)."""
    shape = numpy_helper.from_array(np.array([50_000, 50_000], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["output"])],
        "hog",
        [],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [50_000, 50_000])],
        [shape],
    )
    return serialize(graph)


# Refusals first.


def test_text_file_is_not_a_valid_onnx_model(tmp_path: Path) -> None:
    path = write(tmp_path, b"name,score\nada,0.9\n", "scores.onnx")

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "not a valid ONNX model" in outcome.reason
    assert outcome.signature is None


def test_truncated_onnx_file_is_not_a_valid_onnx_model(tmp_path: Path) -> None:
    whole = build_mlp_small()
    path = write(tmp_path, whole[: len(whole) // 2])

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "not a valid ONNX model" in outcome.reason


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    data = build_mlp_small()
    path = write(tmp_path, data)

    outcome = validate_file(path, max_bytes=1000)

    assert outcome.ok is False
    assert f"is {len(data)} bytes, over the limit of 1000 bytes" in outcome.reason
    assert outcome.ir_version is None  # never parsed


def test_external_data_escaping_the_folder_is_refused_naming_tensor_and_location(tmp_path: Path) -> None:
    path = write(tmp_path, with_external_weight("../../etc/passwd"))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "tensor 'w'" in outcome.reason
    assert "'../../etc/passwd'" in outcome.reason
    assert "'..'" in outcome.reason
    assert "external data is not accepted" in outcome.reason


def test_external_data_at_an_absolute_path_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, with_external_weight("/etc/passwd"))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "'/etc/passwd'" in outcome.reason
    assert "absolute path" in outcome.reason


def test_external_data_inside_a_subgraph_is_refused(tmp_path: Path) -> None:
    hidden = TensorProto(name="hidden", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    hidden.external_data.add(key="location", value="weights.bin")
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["output"], value=hidden)],
        "branch",
        [],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["output"], then_branch=branch, else_branch=branch)],
        "conditional",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
    )
    path = write(tmp_path, serialize(graph))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "tensor 'hidden'" in outcome.reason
    assert "'weights.bin'" in outcome.reason


def test_unknown_operator_is_refused_by_the_checker(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("TotallyMadeUp", ["input"], ["output"])],
        "unknown_op",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
    )
    path = write(tmp_path, serialize(graph))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "onnx.checker rejected the model" in outcome.reason
    assert "TotallyMadeUp" in outcome.reason


def test_graph_output_no_node_produces_is_refused_by_the_checker(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["hidden"])],
        "dangling",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
    )
    path = write(tmp_path, serialize(graph))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "onnx.checker rejected the model" in outcome.reason
    assert "'output'" in outcome.reason


def test_model_newer_than_onnxruntime_is_refused_with_the_ir_version_to_use(tmp_path: Path) -> None:
    graph = onnx.load_from_string(build_identity(TensorProto.FLOAT, [None, 4]))
    graph.ir_version = 14
    path = write(tmp_path, graph.SerializeToString())

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "IR version 14" in outcome.reason
    assert "model.ir_version" in outcome.reason


def test_model_that_fails_at_run_time_is_refused_by_the_smoke_inference(tmp_path: Path) -> None:
    target = numpy_helper.from_array(np.array([3, 7], dtype=np.int64), "target")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "target"], ["output"])],
        "bad_reshape",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [3, 7])],
        [target],
    )
    path = write(tmp_path, serialize(graph))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert outcome.reason.startswith("smoke inference failed: the Reshape node failed")
    assert "cannot be reshaped" in outcome.reason
    assert "onnx.checker (full check): passed" in outcome.log


def test_output_whose_first_dimension_is_not_the_batch_is_refused(tmp_path: Path) -> None:
    """Both dimensions are dynamic, so it looks batchable, but the batch comes out second."""
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["input"], ["output"], perm=[1, 0])],
        "transposed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "features"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["features", "batch"])],
    )
    path = write(tmp_path, serialize(graph))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "output 'output' has first dimension 1 for a batch of 2" in outcome.reason


def test_scikit_learn_zipmap_output_is_refused_with_advice(tmp_path: Path) -> None:
    path = write(tmp_path, build_iris_classifier(zipmap=True))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "seq(map(int64,tensor(float)))" in outcome.reason
    assert "can only carry tensors" in outcome.reason
    assert "options={'zipmap': False}" in outcome.reason


def test_tensor_type_without_a_protocol_datatype_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, build_identity(TensorProto.BFLOAT16, [None, 3]))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is False
    assert "input 'input' has type tensor(bfloat16), which has no Open Inference Protocol datatype" in outcome.reason


# What passes, and the signature it gets.


def test_valid_mlp_passes_with_its_signature(tmp_path: Path) -> None:
    path = write(tmp_path, build_mlp_small())

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is True, outcome.reason
    assert outcome.reason == ""
    assert outcome.signature == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
        "batch_dim": True,
    }
    assert (outcome.opset, outcome.ir_version, outcome.producer) == (17, 8, "turnout-demo 1")
    assert outcome.log[-1] == "smoke inference: ok, batch 2, outputs output[2,10]"
    assert "loaded in onnxruntime on CPUExecutionProvider" in outcome.log


def test_iris_classifier_passes_with_label_and_probabilities(tmp_path: Path) -> None:
    path = write(tmp_path, build_iris_classifier())

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is True, outcome.reason
    assert outcome.signature == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
        "batch_dim": True,
    }
    assert outcome.producer.startswith("skl2onnx")


@pytest.mark.parametrize(
    ("elem_type", "datatype"),
    [
        (TensorProto.BOOL, "BOOL"),
        (TensorProto.UINT8, "UINT8"),
        (TensorProto.UINT16, "UINT16"),
        (TensorProto.UINT32, "UINT32"),
        (TensorProto.UINT64, "UINT64"),
        (TensorProto.INT8, "INT8"),
        (TensorProto.INT16, "INT16"),
        (TensorProto.INT32, "INT32"),
        (TensorProto.INT64, "INT64"),
        (TensorProto.FLOAT16, "FP16"),
        (TensorProto.FLOAT, "FP32"),
        (TensorProto.DOUBLE, "FP64"),
        (TensorProto.STRING, "BYTES"),
    ],
)
def test_every_tensor_type_maps_to_its_open_inference_protocol_datatype(
    tmp_path: Path, elem_type: int, datatype: str
) -> None:
    path = write(tmp_path, build_identity(elem_type, [None, 3]))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is True, outcome.reason
    assert outcome.signature is not None
    assert outcome.signature["inputs"] == [{"name": "input", "datatype": datatype, "shape": [-1, 3]}]
    assert outcome.signature["outputs"] == [{"name": "output", "datatype": datatype, "shape": [-1, 3]}]


def test_onnxruntime_type_strings_map_to_datatypes_and_non_tensors_to_none() -> None:
    assert ort_type_to_datatype("tensor(float)") == "FP32"
    assert ort_type_to_datatype("tensor(string)") == "BYTES"
    assert ort_type_to_datatype("tensor(bfloat16)") is None
    assert ort_type_to_datatype("seq(map(int64,tensor(float)))") is None


def test_fixed_shape_model_has_no_batch_dimension(tmp_path: Path) -> None:
    path = write(tmp_path, build_identity(TensorProto.FLOAT, [2, 3]))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is True, outcome.reason
    assert outcome.signature is not None
    assert outcome.signature["batch_dim"] is False
    assert outcome.signature["inputs"][0]["shape"] == [2, 3]
    assert outcome.log[-1] == "smoke inference: ok, outputs output[2,3]"


def test_symbolic_inner_dimension_is_dynamic_but_not_a_batch_on_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, build_identity(TensorProto.FLOAT, [4, None]))

    outcome = validate_file(path, LIMIT)

    assert outcome.ok is True, outcome.reason
    assert outcome.signature is not None
    assert outcome.signature["inputs"][0]["shape"] == [4, -1]
    assert outcome.signature["batch_dim"] is False


# In a child process with limits.


def test_child_validates_a_valid_model_with_its_signature(tmp_path: Path) -> None:
    path = write(tmp_path, build_mlp(4, [8], 2))

    outcome = run_in_child(path, LIMIT, timeout_s=60, memory_bytes=CHILD_MEMORY)

    assert outcome.ok is True, outcome.reason
    assert outcome.signature == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}],
        "batch_dim": True,
    }
    assert outcome.log[-1].startswith("smoke inference: ok")


def test_child_refuses_a_memory_hog_and_a_normal_model_passes_under_the_same_limit(tmp_path: Path) -> None:
    own_limit = resource.getrlimit(resource.RLIMIT_AS)
    hog = write(tmp_path, memory_hog(), "hog.onnx")
    normal = write(tmp_path, build_mlp_small(), "normal.onnx")

    refused = run_in_child(hog, LIMIT, timeout_s=60, memory_bytes=CHILD_MEMORY)
    passed = run_in_child(normal, LIMIT, timeout_s=60, memory_bytes=CHILD_MEMORY)

    assert refused.ok is False
    assert "ran out of memory" in refused.reason
    assert "10000000000 bytes" in refused.reason
    assert passed.ok is True, passed.reason
    assert resource.getrlimit(resource.RLIMIT_AS) == own_limit  # the limit applied to the child only


def test_a_memory_limit_too_small_for_anything_is_a_failed_outcome_not_an_exception(tmp_path: Path) -> None:
    path = write(tmp_path, build_mlp(4, [8], 2))

    # The child limits itself after importing its libraries, before it reads the
    # file: 64 MiB is too little for onnx or onnxruntime to do anything.
    outcome = run_in_child(path, LIMIT, timeout_s=60, memory_bytes=64 * 1024**2)

    assert outcome.ok is False
    assert "memory" in outcome.reason
    assert "67108864 bytes" in outcome.reason


def test_child_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    path = write(tmp_path, build_mlp_small())
    started = time.monotonic()

    outcome = run_in_child(path, LIMIT, timeout_s=0.01, memory_bytes=CHILD_MEMORY)

    assert outcome.ok is False
    assert "took longer than 0.01 s" in outcome.reason
    assert time.monotonic() - started < 5

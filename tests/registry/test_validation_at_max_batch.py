"""Validation's smoke inference also runs at the version's max_batch_size, under the
workers' limit for inference memory: a model that only breaks at the batch size the
workers will run it at fails its upload, with the reason.

Persona: `owner` (tests/registry/conftest.py) uploads. Real models built with
onnx.helper, validated by the real child process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, VersionStatus

pytestmark = pytest.mark.django_db


def serialize(graph: Any) -> bytes:
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def first_two_rows() -> bytes:
    """[batch, 4] -> its first two rows: right at batch 1 and 2, wrong at any larger batch."""
    constants = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])],
        "first-two",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["rows", 4])],
        constants,
    )
    return serialize(graph)


def wide_per_row(width: int) -> bytes:
    """[batch, 1] -> each row broadcast to `width` floats, then summed: `width * 4` bytes per row in flight."""
    shape = numpy_helper.from_array(np.array([1, width], dtype=np.int64), "shape")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Expand", ["input", "shape"], ["wide"]),
            helper.make_node("ReduceSum", ["wide", "axes"], ["output"], keepdims=1),
        ],
        "wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        [shape, axes],
    )
    return serialize(graph)


def validated(owner: Any, data: bytes, **fields: Any) -> ModelVersion:
    model = services.create_model(name="m", actor=owner)
    version = services.upload_version(model, io.BytesIO(data), actor=owner, **fields).version
    services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    return version


def test_a_model_that_breaks_only_above_batch_two_fails_at_its_max_batch_size(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        version = validated(owner, first_two_rows(), max_batch_size=8)

    assert version.status == VersionStatus.FAILED
    assert version.status_reason == (
        "smoke inference at batch 8 (the version's max_batch_size): output 'output' has first dimension 2 "
        "for a batch of 8 inputs, so the model does not batch along its first dimension"
    )
    log = version.validation_jobs.get().log
    assert "smoke inference: ok, batch 2" in log


def test_the_same_model_passes_with_max_batch_size_two(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        version = validated(owner, first_two_rows(), max_batch_size=2)

    assert version.status == VersionStatus.READY, version.status_reason


def test_a_model_whose_max_batch_needs_more_than_the_workers_memory_limit_fails(
    owner: Any, artifact_root: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # 8 MB per row: 16 MB at batch 2, 512 MB at batch 64, over a 128 MiB limit.
    settings.TURNOUT = {**settings.TURNOUT, "WORKER_RUN_MEMORY_BYTES": 128 * 1024**2}
    with django_capture_on_commit_callbacks(execute=False):
        version = validated(owner, wide_per_row(2_000_000), max_batch_size=64)

    assert version.status == VersionStatus.FAILED
    assert version.status_reason.startswith(
        "smoke inference at batch 64 (the version's max_batch_size) ran out of memory"
    )
    assert (
        "more than the workers' limit for inference of 134217728 bytes (TURNOUT_WORKER_RUN_MEMORY_BYTES) allows: "
        "lower max_batch_size, or raise the limit"
    ) in version.status_reason


def test_an_ordinary_model_passes_at_its_max_batch_size_and_says_so(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        version = validated(owner, build_mlp(4, [8], 2), max_batch_size=64)

    assert version.status == VersionStatus.READY, version.status_reason
    log = version.validation_jobs.get().log
    assert "smoke inference: ok, batch 2," in log
    assert "smoke inference: ok, batch 64," in log

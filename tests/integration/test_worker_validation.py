"""Validation through a real Celery worker process: the upload commits, the
worker validates in a limited child process, and a hostile file cannot take it down."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, VersionStatus
from tests.support.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def memory_bomb() -> bytes:
    """Valid ONNX whose smoke inference asks for a 100 GB tensor."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [160_000, 160_000])
    node = helper.make_node("ConstantOfShape", ["x_shape"], ["output"])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["x_shape"], value=shape), node],
        "bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [160_000, 160_000])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def status_of(version: ModelVersion) -> str:
    version.refresh_from_db()
    return version.status


def test_worker_validates_uploads_and_survives_a_memory_bomb(owner: Any, artifact_root: Path, tmp_path: Path) -> None:
    onnx.checker.check_model(onnx.load_from_string(memory_bomb()))
    worker = WorkerProcess(
        "validator",
        tmp_path / "worker.log",
        ARTIFACT_ROOT=str(artifact_root),
        TURNOUT_VALIDATION_MEMORY_BYTES=str(3 * 1024**3),
    )
    try:
        model = services.create_model(name="served", actor=owner)
        bomb = services.upload_version(model, io.BytesIO(memory_bomb()), actor=owner).version
        assert wait_for(lambda: status_of(bomb) == VersionStatus.FAILED, timeout=60), worker.log()
        assert "ran out of memory" in bomb.status_reason

        good = services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2)), actor=owner).version
        assert wait_for(lambda: status_of(good) == VersionStatus.READY, timeout=60), worker.log()
        assert good.signature["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert worker.process.poll() is None  # still running
        assert good.validation_jobs.get().status == "succeeded"
    finally:
        worker.stop()

"""Fixtures for comparing variants: `owner` (tests/conftest.py) makes `fraud` with a parent v1
and a variant v2 (its INT8 quantization, made here with onnxruntime's quantizer), validated."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel, VersionStatus

Add = Callable[..., ModelVersion]


def int8(model_bytes: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        source.write_bytes(model_bytes)
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return target.read_bytes()


@pytest.fixture
def add(owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> Add:
    """Upload bytes to `model` (`fraud` unless told; created when missing) and validate them here."""

    def add(data: bytes, *, parent: int | None = None, model: str = "fraud") -> ModelVersion:
        registered = RegisteredModel.objects.filter(name=model).first() or services.create_model(
            name=model, actor=owner
        )
        with django_capture_on_commit_callbacks(execute=False):
            version = services.upload_version(registered, io.BytesIO(data), actor=owner, parent_number=parent).version
        services.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        assert version.status == VersionStatus.READY, version.status_reason
        return version

    return add


PARENT = build_mlp(16, [64, 64], 10, seed=3)


@pytest.fixture
def variant(add: Add) -> ModelVersion:
    """fraud v2, the INT8 variant of v1 (an MLP classifier 16 -> 64 -> 64 -> 10)."""
    add(PARENT)
    return add(int8(PARENT), parent=1)

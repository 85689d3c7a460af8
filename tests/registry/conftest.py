"""Fixtures for the registry: its services, validation, the demo models, the management API
(test_api_*.py, with helpers.py) and the pages (test_pages_*.py, with steps.py).

The personas are tests/conftest.py's: `owner` creates `fraud` and `iris` and maintains them,
`maintainer` maintains only `churn` and is a viewer of the owner's models, `viewer` reads
everything and changes nothing, `admin` may do everything.

Pipelines (test_pipeline_*.py, test_api_pipelines.py, test_pages_pipelines.py): `owner` makes
the pipeline `chain` and the models of its stages (`stages`), so she maintains them all.

Every test keeps its artifacts in its own temporary folder (`artifact_root`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelKind, ModelVersion, RegisteredModel
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.support.pipeline_models import build_affine


@pytest.fixture(autouse=True)
def own_artifact_folder(artifact_root: Path) -> Path:
    return artifact_root


@pytest.fixture
def onnx_bytes() -> bytes:
    """A real, small ONNX model: FP32 [batch, 4] -> FP32 [batch, 3]."""
    return build_mlp(4, [8], 3)


@pytest.fixture
def uploaded(owner: Any, django_capture_on_commit_callbacks: Any) -> Callable[[RegisteredModel, bytes], ModelVersion]:
    """Upload as `owner` through the service, without validating; the validation task is captured, not sent."""

    def upload(model: RegisteredModel, data: bytes) -> ModelVersion:
        with django_capture_on_commit_callbacks(execute=False):
            return ModelVersionFactory(model=model, actor=owner, onnx_bytes=data)

    return upload


@pytest.fixture
def ready_stage(owner: Any, artifact_root: Path) -> Callable[[str, bytes], ModelVersion]:
    """A new model of `owner`'s with one version of these ONNX bytes, validated (in a child
    process, a few seconds each: build only the stages a test needs)."""

    def ready(name: str, onnx_bytes: bytes) -> ModelVersion:
        model = RegisteredModelFactory(name=name, actor=owner)
        return ModelVersionFactory(model=model, actor=owner, onnx_bytes=onnx_bytes, validate=True)

    return ready


@pytest.fixture
def scale_and_widen(ready_stage: Callable[[str, bytes], ModelVersion]) -> dict[str, ModelVersion]:
    """Two ready stage versions: `st-scale` v1 x [-1,4] -> y [-1,4] and `st-widen` v1 x [-1,4] -> y [-1,6]."""
    return {
        "scale": ready_stage("st-scale", build_affine(4, 2.0, 0.0)),
        "widen": ready_stage("st-widen", build_affine(4, 1.0, 1.0, out_dim=6)),
    }


@pytest.fixture
def stages(
    scale_and_widen: dict[str, ModelVersion], ready_stage: Callable[[str, bytes], ModelVersion]
) -> dict[str, ModelVersion]:
    """`scale_and_widen`, and `st-six` v1 x [-1,6] -> y [-1,6]."""
    return {**scale_and_widen, "six": ready_stage("st-six", build_affine(6, 1.0, 0.5))}


@pytest.fixture
def pipeline(owner: Any) -> RegisteredModel:
    """`chain`, a pipeline `owner` created and so maintains; no version yet."""
    return services.create_model(name="chain", actor=owner, kind=ModelKind.PIPELINE)

"""Fixtures for the registry: its services, validation, the demo models, the management API
(test_api_*.py, with helpers.py) and the pages (test_pages_*.py, with steps.py).

The personas are tests/conftest.py's: `owner` creates `fraud` and `iris` and maintains them,
`maintainer` maintains only `churn` and is a viewer of the owner's models, `viewer` reads
everything and changes nothing, `admin` may do everything.

Every test keeps its artifacts in its own temporary folder (`artifact_root`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel
from tests.factories import ModelVersionFactory


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

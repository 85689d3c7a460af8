"""Fixtures for the registry dashboard pages.

Personas, besides `admin` and `viewer` from tests/conftest.py:
- `owner`: a member of the `maintainers` group; may create models, and
  maintains (uploads, moves aliases on) the models it creates.
- `viewer`: signed in, no grants; reads every page, changes nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel


@pytest.fixture(autouse=True)
def artifact_storage(settings: Any, tmp_path: Path) -> Path:
    """Artifacts of each test in its own folder."""
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def iris(owner: Any) -> RegisteredModel:
    """A model `owner` created and so maintains."""
    return services.create_model(name="iris", actor=owner, description="Iris flower classifier", tags=["tabular"])


@pytest.fixture
def onnx_bytes() -> bytes:
    """A real, small ONNX model: FP32 [batch, 4] -> FP32 [batch, 3]."""
    return build_mlp(4, [8], 3)


@pytest.fixture
def uploaded(owner: Any, django_capture_on_commit_callbacks: Any) -> Callable[[RegisteredModel, bytes], ModelVersion]:
    """Upload through the service, without validating; the validation task is captured, not sent."""

    def upload(model: RegisteredModel, data: bytes) -> ModelVersion:
        with django_capture_on_commit_callbacks(execute=False):
            return services.upload_version(model, io.BytesIO(data), actor=owner).version

    return upload

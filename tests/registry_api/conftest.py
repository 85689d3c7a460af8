"""Fixtures for the registry API tests.

Personas (on top of `admin` and `viewer` from tests/conftest.py):
- `owner`: a maintainer (member of the `maintainers` group); owns `fraud`, may
  create models, upload versions, move aliases.
- `outsider`: also a maintainer, but of another model (`churn`) only: on
  `fraud` they are a viewer.
- `viewer`: signed in, no grants: reads everything, changes nothing.

Every test keeps its artifacts in its own temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry import services
from registry.models import RegisteredModel


@pytest.fixture(autouse=True)
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return root


@pytest.fixture
def fraud(owner: Any) -> RegisteredModel:
    return services.create_model(name="fraud", actor=owner, description="Card fraud scores", tags=["tabular"])

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    """Artifacts of this test in their own folder (local storage)."""
    root = tmp_path / "artifacts"
    root.mkdir()
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return root

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


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    """A maintainer: member of the `maintainers` group, owner of the models it creates."""
    from registry.permissions import maintainers_group

    user = django_user_model.objects.create_user("olga", "olga@example.com", "correct horse battery")
    user.groups.add(maintainers_group())
    return user

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
from rest_framework.test import APIClient

from registry import services
from registry.models import RegisteredModel
from registry.permissions import maintainers_group
from tests.support.clients import signed_in


@pytest.fixture(autouse=True)
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return root


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("olga", "olga@example.com", "correct horse battery")
    user.groups.add(maintainers_group())
    return user


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("otto", "otto@example.com", "correct horse battery")
    user.groups.add(maintainers_group())
    services.create_model(name="churn", actor=user)
    return user


@pytest.fixture
def fraud(owner: Any) -> RegisteredModel:
    return services.create_model(name="fraud", actor=owner, description="Card fraud scores", tags=["tabular"])


@pytest.fixture
def owner_api(owner: Any) -> APIClient:
    return signed_in(owner, APIClient)


@pytest.fixture
def outsider_api(outsider: Any) -> APIClient:
    return signed_in(outsider, APIClient)


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    return signed_in(viewer, APIClient)


@pytest.fixture
def admin_api(admin: Any) -> APIClient:
    return signed_in(admin, APIClient)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()

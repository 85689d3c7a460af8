"""/api/models/{name}/aliases/: pointing names like `production` at ready versions."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from tests.registry.helpers import onnx_bytes, upload_and_validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_ready(
    owner_api: APIClient, fraud: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> list[ModelVersion]:
    return [
        upload_and_validate(owner_api, "fraud", onnx_bytes(seed), django_capture_on_commit_callbacks) for seed in (0, 1)
    ]


def production() -> Alias | None:
    return Alias.objects.select_related("version").filter(model__name="fraud", name="production").first()


def test_outsider_cannot_move_an_alias(
    maintainer_api: APIClient, owner: Any, two_ready: list[ModelVersion], fraud: RegisteredModel
) -> None:
    services.set_alias(fraud, "production", two_ready[0], actor=owner)

    response = maintainer_api.put("/api/models/fraud/aliases/production/", {"version": 2}, format="json")
    deleted = maintainer_api.delete("/api/models/fraud/aliases/production/")

    assert response.status_code == 403
    assert "maintainers of model 'fraud'" in response.json()["detail"]
    assert deleted.status_code == 403
    alias = production()
    assert alias is not None
    assert alias.version.number == 1


def test_viewer_cannot_create_an_alias(viewer_api: APIClient, two_ready: list[ModelVersion]) -> None:
    response = viewer_api.put("/api/models/fraud/aliases/production/", {"version": 1}, format="json")

    assert response.status_code == 403
    assert production() is None


def test_alias_to_a_failed_or_pending_version_is_400_and_the_alias_stays(
    owner_api: APIClient,
    owner: Any,
    two_ready: list[ModelVersion],
    fraud: RegisteredModel,
    django_capture_on_commit_callbacks: Any,
) -> None:
    services.set_alias(fraud, "production", two_ready[0], actor=owner)
    with django_capture_on_commit_callbacks(execute=False):
        pending = services.upload_version(fraud, io.BytesIO(onnx_bytes(7)), actor=owner).version
        failed = services.upload_version(fraud, io.BytesIO(b"not onnx"), actor=owner).version
    services.run_validation(failed.validation_jobs.get().pk)
    failed.refresh_from_db()
    assert (pending.status, failed.status) == (VersionStatus.PENDING, VersionStatus.FAILED)

    to_pending = owner_api.put("/api/models/fraud/aliases/production/", {"version": pending.number}, format="json")
    to_failed = owner_api.put("/api/models/fraud/aliases/production/", {"version": failed.number}, format="json")
    new_on_failed = owner_api.put("/api/models/fraud/aliases/staging/", {"version": failed.number}, format="json")

    assert to_pending.status_code == 400
    assert to_pending.json() == {
        "detail": f"version {pending.number} is pending; only a ready version can take an alias"
    }
    assert to_failed.status_code == 400
    assert "is failed" in to_failed.json()["detail"]
    assert new_on_failed.status_code == 400
    alias = production()
    assert alias is not None
    assert alias.version.number == 1
    assert not Alias.objects.filter(name="staging").exists()
    assert AuditEntry.objects.filter(action__startswith="alias.").count() == 1


def test_alias_to_an_unknown_version_or_with_a_bad_body_is_400(
    owner_api: APIClient, two_ready: list[ModelVersion]
) -> None:
    unknown = owner_api.put("/api/models/fraud/aliases/production/", {"version": 9}, format="json")
    empty = owner_api.put("/api/models/fraud/aliases/production/", {}, format="json")
    bad_name = owner_api.put("/api/models/fraud/aliases/Prod!/", {"version": 1}, format="json")

    assert unknown.status_code == 400
    assert unknown.json() == {"version": ["version 9 does not exist on model 'fraud'."]}
    assert empty.status_code == 400
    assert empty.json()["version"] == ["This field is required."]
    assert bad_name.status_code == 400
    assert "lowercase" in bad_name.json()["name"][0]
    assert not Alias.objects.exists()


def test_moving_production_is_audited_with_before_and_after(
    owner_api: APIClient, viewer_api: APIClient, two_ready: list[ModelVersion]
) -> None:
    created = owner_api.put("/api/models/fraud/aliases/production/", {"version": 1}, format="json")
    moved = owner_api.put("/api/models/fraud/aliases/production/", {"version": 2}, format="json")

    assert created.status_code == 201
    assert moved.status_code == 200
    assert moved.json()["version"] == 2
    alias = production()
    assert alias is not None
    assert alias.version.number == 2

    shown = viewer_api.get("/api/models/fraud/aliases/production/")
    listed = viewer_api.get("/api/models/fraud/aliases/")
    model = viewer_api.get("/api/models/fraud/")
    version = viewer_api.get("/api/models/fraud/versions/2/")
    audit = viewer_api.get("/api/audit/", {"object_type": "registry.alias", "object_id": str(alias.pk)})

    assert shown.status_code == 200
    assert shown.json()["version"] == 2
    assert [a["name"] for a in listed.json()["results"]] == ["production"]
    assert model.json()["aliases"] == {"production": 2}
    assert version.json()["aliases"] == ["production"]
    assert audit.status_code == 200
    entries = audit.json()["results"]  # newest first
    assert [e["action"] for e in entries] == ["alias.moved", "alias.created"]
    assert entries[0]["before"] == {"version": 1}
    assert entries[0]["after"] == {"version": 2}
    assert entries[0]["actor_name"] == "olga"
    assert entries[1]["before"] is None
    assert entries[1]["after"] == {"version": 1}


def test_maintainer_deletes_an_alias(owner_api: APIClient, two_ready: list[ModelVersion]) -> None:
    owner_api.put("/api/models/fraud/aliases/staging/", {"version": 1}, format="json")

    response = owner_api.delete("/api/models/fraud/aliases/staging/")
    again = owner_api.delete("/api/models/fraud/aliases/staging/")

    assert response.status_code == 204
    assert again.status_code == 404
    assert not Alias.objects.filter(name="staging").exists()
    assert AuditEntry.objects.filter(action="alias.deleted").get().before == {"version": 1}

"""Archiving a version: it stops being served and offered, keeps its artifact and
audit trail, cannot take an alias or traffic, and can be restored.

Personas: `owner` maintains `fraud` (tests/registry/conftest.py); `viewer` reads only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.demo_models import build_mlp
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from rollouts import services as rollouts
from tests.support.asgi import AsgiClient
from tests.support.clients import signed_in

MLP = build_mlp(4, [8], 2, seed=11)
Add = Callable[..., ModelVersion]


@pytest.fixture
def fraud(owner: Any) -> RegisteredModel:
    return services.create_model(name="fraud", actor=owner)


@pytest.fixture
def add(owner: Any, fraud: RegisteredModel, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> Add:
    """Upload bytes to `fraud` and validate them here; `production=True` points the alias at the version."""

    def add(data: bytes, *, validate: bool = True, production: bool = False) -> ModelVersion:
        with django_capture_on_commit_callbacks(execute=False):
            version = services.upload_version(fraud, io.BytesIO(data), actor=owner).version
        if validate:
            services.run_validation(version.validation_jobs.get().pk)
            version.refresh_from_db()
        if production:
            services.set_alias(fraud, services.PRODUCTION, version, actor=owner)
        return version

    return add


def status_of(version: ModelVersion) -> str:
    version.refresh_from_db()
    return version.status


# --- Refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_viewer_cannot_archive(add: Add, viewer: Any) -> None:
    version = add(MLP)

    response = signed_in(viewer, APIClient).post("/api/models/fraud/versions/1/archive/")

    assert response.status_code == 403
    assert status_of(version) == VersionStatus.READY
    assert not AuditEntry.objects.filter(action="version.archived").exists()


@pytest.mark.django_db
def test_a_version_still_validating_cannot_be_archived(add: Add, owner: Any) -> None:
    version = add(MLP, validate=False)

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/1/archive/")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "version 1 is pending; wait until its validation has finished, then archive it"
    }
    assert status_of(version) == VersionStatus.PENDING


@pytest.mark.django_db
def test_an_aliased_version_cannot_be_archived(add: Add, owner: Any) -> None:
    version = add(MLP, production=True)

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/1/archive/")

    assert response.status_code == 400
    assert response.json() == {"detail": "the alias 'production' points at version 1: move or delete it first"}
    assert status_of(version) == VersionStatus.READY


@pytest.mark.django_db
def test_a_version_in_an_active_rollout_cannot_be_archived(add: Add, owner: Any, fraud: RegisteredModel) -> None:
    add(MLP, production=True)
    canary = add(build_mlp(4, [8], 2, seed=12))
    rollout = rollouts.start_canary(fraud, canary, actor=owner)

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/2/archive/")

    assert response.status_code == 400
    assert response.json() == {"detail": f"version 2 takes part in active rollout #{rollout.pk}: end it first"}
    assert status_of(canary) == VersionStatus.READY


@pytest.mark.django_db
def test_an_archived_version_takes_no_alias_no_traffic_and_no_load(
    add: Add, owner: Any, fraud: RegisteredModel
) -> None:
    add(MLP, production=True)
    retired = add(build_mlp(4, [8], 2, seed=12))
    api = signed_in(owner, APIClient)
    stale = ModelVersion.objects.get(pk=retired.pk)  # read before the archive: still "ready" in memory
    assert api.post("/api/models/fraud/versions/2/archive/").status_code == 200

    alias = api.put("/api/models/fraud/aliases/staging/", {"version": 2}, format="json")
    load = api.post("/api/models/fraud/versions/2/load/")
    again = api.post("/api/models/fraud/versions/2/archive/")
    with pytest.raises(rollouts.RolloutError, match="version 2 is archived; only a ready version can take traffic"):
        rollouts.start_canary(fraud, stale, actor=owner)
    with pytest.raises(rollouts.RolloutError, match="version 2 is archived"):
        rollouts.start_shadow(fraud, stale, actor=owner)

    assert alias.status_code == 400
    assert alias.json() == {"detail": "version 2 is archived; only a ready version can take an alias"}
    assert not Alias.objects.filter(name="staging").exists()
    assert load.status_code == 400
    assert again.status_code == 400
    assert again.json() == {"detail": "version 2 is already archived"}
    assert not fraud.rollouts.exists()


# --- Archive and restore ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_archiving_keeps_the_artifact_and_is_audited_and_restore_makes_it_ready(
    add: Add, owner: Any, artifact_root: Path
) -> None:
    version = add(MLP)
    api = signed_in(owner, APIClient)

    archived = api.post("/api/models/fraud/versions/1/archive/")

    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"
    version.refresh_from_db()
    assert version.status == VersionStatus.ARCHIVED
    assert version.artifact
    assert (artifact_root / version.artifact).is_file()
    assert version.signature is not None
    entry = AuditEntry.objects.get(action="version.archived")
    assert (entry.actor_name, entry.before, entry.after) == ("olga", {"status": "ready"}, {"status": "archived"})
    assert api.get("/api/models/fraud/versions/1/").json()["status"] == "archived"

    restored = api.post("/api/models/fraud/versions/1/restore/")

    assert restored.status_code == 200
    assert restored.json()["status"] == "ready"
    assert status_of(version) == VersionStatus.READY
    assert AuditEntry.objects.get(action="version.restored").after == {"status": "ready"}
    assert api.post("/api/models/fraud/versions/1/restore/").json() == {
        "detail": "version 1 is ready, not archived; there is nothing to restore"
    }


@pytest.mark.django_db
def test_a_failed_upload_can_be_archived_and_restores_as_failed(add: Add, owner: Any) -> None:
    failed = add(b"not an onnx file")
    assert failed.status == VersionStatus.FAILED
    assert failed.artifact == ""
    api = signed_in(owner, APIClient)

    archived = api.post("/api/models/fraud/versions/1/archive/")
    restored = api.post("/api/models/fraud/versions/1/restore/")

    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"
    assert restored.status_code == 200
    assert restored.json()["status"] == "failed"
    assert status_of(failed) == VersionStatus.FAILED
    assert failed.status_reason


@pytest.mark.django_db
def test_uploading_an_archived_versions_bytes_again_says_how_to_get_it_back(add: Add, owner: Any) -> None:
    version = add(MLP)
    services.archive_version(version, actor=owner)
    file = SimpleUploadedFile("model.onnx", MLP, content_type="application/octet-stream")

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/", {"file": file}, format="multipart")

    assert response.status_code == 200
    assert response.json()["detail"] == (
        "these bytes are already version 1 of fraud, which is archived: restore it to serve it again"
    )
    assert ModelVersion.objects.filter(model__name="fraud").count() == 1


# --- The version page ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_page_offers_archive_to_maintainers_only_and_explains_aliases(add: Add, owner: Any, viewer: Any) -> None:
    add(MLP, production=True)
    add(build_mlp(4, [8], 2, seed=12))

    as_owner_aliased = signed_in(owner).get("/models/fraud/versions/1/").content.decode()
    as_owner_free = signed_in(owner).get("/models/fraud/versions/2/").content.decode()
    as_viewer = signed_in(viewer).get("/models/fraud/versions/2/").content.decode()

    assert "first move or delete its aliases" in as_owner_aliased
    assert 'action="/models/fraud/versions/1/archive/"' not in as_owner_aliased
    assert 'action="/models/fraud/versions/2/archive/"' in as_owner_free
    assert "Archive this version" not in as_viewer


@pytest.mark.django_db
def test_archiving_from_the_page_asks_first_and_names_the_effect(add: Add, owner: Any) -> None:
    add(MLP, production=True)
    version = add(build_mlp(4, [8], 2, seed=12))
    browser = signed_in(owner)

    asked = browser.get("/models/fraud/versions/2/archive/").content.decode()
    posted_without = browser.post("/models/fraud/versions/2/archive/")

    assert "fraud v2 stops being served: requests for it get 404" in asked
    assert '<button type="submit" class="danger">Yes, archive v2</button>' in asked
    assert posted_without.status_code == 200
    assert 'name="confirm" value="yes"' in posted_without.content.decode()
    assert status_of(version) == VersionStatus.READY
    assert browser.get("/models/fraud/versions/2/load/").status_code == 405


@pytest.mark.django_db
def test_viewer_cannot_archive_from_the_page(add: Add, viewer: Any) -> None:
    version = add(MLP)

    response = signed_in(viewer).post("/models/fraud/versions/1/archive/", {"confirm": "yes"})

    assert response.status_code == 403
    assert status_of(version) == VersionStatus.READY


@pytest.mark.django_db
def test_maintainer_archives_and_restores_from_the_page_and_the_alias_form_stops_offering_it(
    add: Add, owner: Any
) -> None:
    add(MLP, production=True)
    version = add(build_mlp(4, [8], 2, seed=12))
    browser = signed_in(owner)

    archived = browser.post("/models/fraud/versions/2/archive/", {"confirm": "yes"}, follow=True)
    model_page = browser.get("/models/fraud/").content.decode()

    assert archived.redirect_chain == [("/models/fraud/versions/2/", 302)]
    page = archived.content.decode()
    assert "Version 2 is archived: it is no longer served" in page
    assert "requests for it get 404" in page
    assert 'action="/models/fraud/versions/2/restore/"' in page
    assert status_of(version) == VersionStatus.ARCHIVED
    assert '<option value="2"' not in model_page  # the alias form offers ready versions only
    assert '<option value="1"' in model_page

    restored = browser.post("/models/fraud/versions/2/restore/", follow=True)

    assert "Version 2 is restored: it is ready again." in restored.content.decode()
    assert status_of(version) == VersionStatus.READY


@pytest.mark.django_db
def test_page_refuses_archiving_an_aliased_version_with_the_reason(add: Add, owner: Any) -> None:
    version = add(MLP, production=True)

    response = signed_in(owner).post("/models/fraud/versions/1/archive/", {"confirm": "yes"}, follow=True)

    assert "Not done: The alias &#x27;production&#x27; points at version 1" in response.content.decode()
    assert status_of(version) == VersionStatus.READY


# --- The gateway --------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_gateway_answers_404_for_an_archived_version_and_stops_listing_it(
    add: Add, owner: Any, gateway_client: AsgiClient
) -> None:
    add(MLP, production=True)
    retired = add(build_mlp(4, [8], 2, seed=12))
    services.archive_version(retired, actor=owner)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}

    infer = gateway_client.post("/v2/models/fraud/versions/2/infer", json.dumps(body).encode())
    metadata = gateway_client.get("/v2/models/fraud/versions/2")
    ready = gateway_client.get("/v2/models/fraud/versions/2/ready")
    model = gateway_client.get("/v2/models/fraud")

    assert infer.status == 404
    assert infer.json() == {"error": "model 'fraud' version 2 is archived: it is no longer served"}
    assert metadata.status == 404
    assert ready.status == 404
    assert model.status == 200
    assert model.json()["versions"] == ["1"]

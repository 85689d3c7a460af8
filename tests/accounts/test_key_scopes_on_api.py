"""A `manage` key acts only on the models its patterns match, on every `/api` endpoint.

Persona: `admin` (may do everything) holds a key limited to `fraud-*`. Whatever the
admin may do, the key reaches only `fraud-a`: `churn` answers 404 exactly as a model
that does not exist, leaves no trace in lists, and cannot be created or changed.
A `*` key and the admin's browser session see everything.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts import services as keys
from audit.models import AuditEntry
from registry import services as registry
from registry.demo_models import build_mlp
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from rollouts import services as rollouts
from rollouts.models import Rollout, RolloutStatus
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return tmp_path


def ready_version(model: RegisteredModel, actor: Any, seed: int, capture: Any) -> ModelVersion:
    """Upload real ONNX bytes and run the validation the Celery task would run after commit."""
    with capture(execute=False):
        version = registry.upload_version(model, io.BytesIO(build_mlp(4, [8], 2, seed=seed)), actor=actor).version
    registry.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    assert version.status == VersionStatus.READY, version.status_reason
    return version


@pytest.fixture
def models(admin: Any, django_capture_on_commit_callbacks: Any) -> dict[str, Any]:
    """`fraud-a` and `churn`, each with a ready production version; `churn` runs a shadow."""
    found: dict[str, Any] = {}
    for seed, name in enumerate(("fraud-a", "churn")):
        model = registry.create_model(name=name, actor=admin, description="before")
        champion = ready_version(model, admin, seed * 2, django_capture_on_commit_callbacks)
        registry.set_alias(model, "production", champion, actor=admin)
        found[name] = model
    candidate = ready_version(found["churn"], admin, 99, django_capture_on_commit_callbacks)
    found["churn_shadow"] = rollouts.start_shadow(found["churn"], candidate, actor=admin, fraction=0.5)
    return found


@pytest.fixture
def scoped(admin: Any, redis_client: Any) -> APIClient:
    _, secret = keys.create_key(admin, name="fraud job", model_patterns=["fraud-*"], actions=["manage"])
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_model_out_of_scope_answers_404_like_an_unknown_one(models: dict[str, Any], scoped: APIClient) -> None:
    unknown = scoped.get("/api/models/no-such-model/")
    unknown_rollout = scoped.get("/api/rollouts/999999/")

    for path, like in (
        ("/api/models/churn/", unknown),
        ("/api/models/churn/versions/", unknown),
        ("/api/models/churn/versions/1/", unknown),
        ("/api/models/churn/aliases/", unknown),
        ("/api/models/churn/aliases/production/", unknown),
        (f"/api/rollouts/{models['churn_shadow'].pk}/", unknown_rollout),
        (f"/api/rollouts/{models['churn_shadow'].pk}/analysis/", unknown_rollout),
    ):
        response = scoped.get(path)
        assert (response.status_code, response.json()) == (404, like.json()), path
    assert (unknown.status_code, unknown_rollout.status_code) == (404, 404)


def test_a_key_cannot_change_a_model_out_of_scope(models: dict[str, Any], scoped: APIClient) -> None:
    churn = models["churn"]

    changed = scoped.patch("/api/models/churn/", {"description": "after"}, format="json")
    uploaded = scoped.post(
        "/api/models/churn/versions/",
        {"file": SimpleUploadedFile("m.onnx", build_mlp(4, [8], 2, seed=7))},
        format="multipart",
    )
    version = scoped.patch("/api/models/churn/versions/1/", {"max_batch_size": 2}, format="json")
    moved = scoped.put("/api/models/churn/aliases/production/", {"version": 2}, format="json")
    deleted = scoped.delete("/api/models/churn/aliases/production/")

    assert [r.status_code for r in (changed, uploaded, version, moved, deleted)] == [404] * 5
    churn.refresh_from_db()
    assert churn.description == "before"
    assert churn.versions.count() == 2
    assert churn.versions.get(number=1).max_batch_size != 2
    assert Alias.objects.get(model=churn, name="production").version.number == 1


def test_a_key_cannot_steer_or_start_rollouts_out_of_scope(models: dict[str, Any], scoped: APIClient) -> None:
    shadow = models["churn_shadow"]

    paused = scoped.post(f"/api/rollouts/{shadow.pk}/pause/")
    stopped = scoped.post(f"/api/rollouts/{shadow.pk}/stop/")
    started = scoped.post("/api/rollouts/", {"kind": "shadow", "model": "churn", "version": 2}, format="json")
    unknown = scoped.post("/api/rollouts/", {"kind": "shadow", "model": "nothing", "version": 2}, format="json")

    assert (paused.status_code, stopped.status_code) == (404, 404)
    assert started.status_code == 400
    assert started.json()["model"] == [m.replace("nothing", "churn") for m in unknown.json()["model"]]
    shadow.refresh_from_db()
    assert shadow.status == RolloutStatus.RUNNING
    assert Rollout.objects.count() == 1


def test_a_key_creates_only_models_its_patterns_match(models: dict[str, Any], scoped: APIClient) -> None:
    outside = scoped.post("/api/models/", {"name": "churn-2"}, format="json")
    existing = scoped.post("/api/models/", {"name": "churn"}, format="json")  # not "already exists"
    padded = scoped.post("/api/models/", {"name": " churn-3 "}, format="json")
    inside = scoped.post("/api/models/", {"name": "fraud-b"}, format="json")

    assert (outside.status_code, existing.status_code, padded.status_code) == (403, 403, 403)
    assert "fraud-*" in outside.json()["detail"]
    assert "exists" not in existing.json()["detail"]
    assert inside.status_code == 201
    assert set(RegisteredModel.objects.values_list("name", flat=True)) == {"fraud-a", "fraud-b", "churn"}


def test_lists_show_only_models_in_scope(models: dict[str, Any], scoped: APIClient) -> None:
    listed = scoped.get("/api/models/").json()
    rollouts_listed = scoped.get("/api/rollouts/").json()
    by_name = scoped.get("/api/rollouts/?model=churn").json()

    assert [m["name"] for m in listed["results"]] == ["fraud-a"]
    assert listed["count"] == 1
    assert rollouts_listed["count"] == 0
    assert by_name["count"] == 0
    assert Rollout.objects.filter(model__name="churn").count() == 1


def test_the_audit_log_shows_a_key_only_its_models(models: dict[str, Any], scoped: APIClient) -> None:
    churn_entry = AuditEntry.objects.filter(object_type="registry.registeredmodel", object_repr="churn").get()

    entries = scoped.get("/api/audit/?limit=500").json()["results"]
    hidden = scoped.get(f"/api/audit/{churn_entry.pk}/")

    assert entries, "the key should see fraud-a's history"
    assert {e["object_repr"].split(" ")[0].split("@")[0] for e in entries} == {"fraud-a"}
    assert {e["object_type"] for e in entries} == {
        "registry.registeredmodel",
        "registry.modelversion",
        "registry.alias",
    }
    assert hidden.status_code == 404
    assert AuditEntry.objects.filter(object_repr__startswith="churn").count() >= 4


def test_the_key_changes_models_in_scope(models: dict[str, Any], scoped: APIClient) -> None:
    response = scoped.patch("/api/models/fraud-a/", {"description": "after"}, format="json")

    assert response.status_code == 200
    models["fraud-a"].refresh_from_db()
    assert models["fraud-a"].description == "after"


def test_a_star_key_and_a_session_see_every_model(admin: Any, models: dict[str, Any], redis_client: Any) -> None:
    _, secret = keys.create_key(admin, name="all", model_patterns=["*"], actions=["manage"])
    star = APIClient()
    star.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    session = signed_in(admin, APIClient)

    for client in (star, session):
        assert client.get("/api/models/").json()["count"] == 2
        assert client.get(f"/api/rollouts/{models['churn_shadow'].pk}/").status_code == 200
        audit = client.get("/api/audit/?object_type=accounts.apikey").json()
        assert audit["count"] == AuditEntry.objects.filter(object_type="accounts.apikey").count() == 1

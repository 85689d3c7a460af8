"""/api/models/{name}/versions/: upload, validation, duplicates, limits and serving settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.models import ModelVersion, RegisteredModel, ValidationJob, VersionStatus
from tests.registry.helpers import onnx_bytes, upload, upload_and_validate

pytestmark = pytest.mark.django_db


class UnreadableBody:
    """A request body that fails the test if anything reads it."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, *args: Any) -> bytes:
        self.reads += 1
        raise AssertionError("the request body was read")

    readline = read


# --- Refusals first ----------------------------------------------------------------------------------------------


def test_viewer_cannot_upload_and_nothing_is_stored(
    viewer_api: APIClient, fraud: RegisteredModel, artifact_root: Path
) -> None:
    response = upload(viewer_api, "fraud", onnx_bytes())

    assert response.status_code == 403
    assert "maintainers of model 'fraud'" in response.json()["detail"]
    assert not ModelVersion.objects.filter(model=fraud).exists()
    assert not ValidationJob.objects.exists()
    assert list(artifact_root.rglob("*.onnx")) == []


def test_outsider_cannot_upload_to_a_model_they_do_not_maintain(
    maintainer_api: APIClient, fraud: RegisteredModel
) -> None:
    response = upload(maintainer_api, "fraud", onnx_bytes())

    assert response.status_code == 403
    assert not ModelVersion.objects.filter(model=fraud).exists()


def test_upload_to_an_unknown_model_is_404(owner_api: APIClient, owner: Any) -> None:
    response = upload(owner_api, "nope", onnx_bytes())

    assert response.status_code == 404
    assert not ModelVersion.objects.exists()


def test_oversized_content_length_is_413_before_the_body_is_read(
    owner_api: APIClient, fraud: RegisteredModel, settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 1024 * 1024}
    body = UnreadableBody()

    response = owner_api.generic(
        "POST",
        "/api/models/fraud/versions/",
        content_type="multipart/form-data; boundary=xyz",
        **{"wsgi.input": body, "CONTENT_LENGTH": str(3 * 1024 * 1024)},
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The upload is 3145728 bytes; the largest artifact accepted is 1048576 bytes "
        "(TURNOUT_MAX_ARTIFACT_BYTES). Nothing was stored."
    }
    assert body.reads == 0
    assert not ModelVersion.objects.filter(model=fraud).exists()


def test_file_over_the_limit_within_the_multipart_allowance_is_413(
    owner_api: APIClient, fraud: RegisteredModel, settings: Any, artifact_root: Path
) -> None:
    data = onnx_bytes()
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": len(data) - 1}

    response = upload(owner_api, "fraud", data)

    assert response.status_code == 413
    assert f"over the limit of {len(data) - 1} bytes" in response.json()["detail"]
    assert not ModelVersion.objects.filter(model=fraud).exists()
    assert list(artifact_root.rglob("*.onnx")) == []


def test_upload_without_a_file_or_with_bad_fields_is_400_and_stores_nothing(
    owner_api: APIClient, fraud: RegisteredModel, artifact_root: Path
) -> None:
    no_file = owner_api.post("/api/models/fraud/versions/", {"description": "x"}, format="multipart")
    bad_json = upload(owner_api, "fraud", onnx_bytes(), tags="[not json")
    bad_serving = upload(owner_api, "fraud", onnx_bytes(), max_batch_size="0", execution_provider="tpu")
    typo = upload(owner_api, "fraud", onnx_bytes(), max_batch="8")
    no_parent = upload(owner_api, "fraud", onnx_bytes(), parent="7")

    assert no_file.status_code == 400
    assert no_file.json()["file"] == ["No file was submitted."]
    assert bad_json.status_code == 400
    assert "JSON" in bad_json.json()["tags"][0]
    assert bad_serving.status_code == 400
    assert set(bad_serving.json()) == {"max_batch_size", "execution_provider"}
    assert typo.status_code == 400
    assert "Unknown field" in typo.json()["max_batch"][0]
    assert no_parent.status_code == 400
    assert no_parent.json() == {"parent": ["version 7 does not exist on model 'fraud'."]}
    assert not ModelVersion.objects.filter(model=fraud).exists()
    assert list(artifact_root.rglob("*.onnx")) == []


def test_non_onnx_upload_fails_validation_with_a_reason_and_its_file_is_removed(
    owner_api: APIClient, fraud: RegisteredModel, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = upload(owner_api, "fraud", b"this is a CSV file,not a model\n1,2\n")
    assert response.status_code == 201
    assert len(list(artifact_root.rglob("*.onnx"))) == 1
    version = ModelVersion.objects.get(model=fraud, number=1)

    services.run_validation(version.validation_jobs.get().pk)
    shown = owner_api.get("/api/models/fraud/versions/1/")

    assert shown.status_code == 200
    body = shown.json()
    assert body["status"] == "failed"
    assert body["status_reason"]
    assert body["validation"]["status"] == "failed"
    assert body["signature"] is None
    version.refresh_from_db()
    assert version.status == VersionStatus.FAILED
    assert version.artifact == ""
    assert list(artifact_root.rglob("*.onnx")) == []


# --- The happy path ----------------------------------------------------------------------------------------------


def test_upload_is_pending_then_ready_with_a_signature_after_validation(
    owner_api: APIClient, viewer_api: APIClient, fraud: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    data = onnx_bytes()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(
            owner_api,
            "fraud",
            data,
            description="first cut",
            tags=json.dumps(["baseline"]),
            metadata=json.dumps({"auc": 0.91}),
            source_run_url="https://mlflow.example.com/runs/42",
            training_data="s3://data/fraud/2024-06",
            max_batch_size="32",
            preferred_batch_sizes="[8, 16]",
            execution_provider="cpu",
            warmup="false",
        )

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["number"] == 1
    assert created["status"] == "pending"
    assert created["validation"]["status"] == "queued"
    assert created["created_by"] == "olga"
    assert len(callbacks) == 1
    version = ModelVersion.objects.get(model=fraud, number=1)
    assert version.status == VersionStatus.PENDING
    assert (version.tags, version.metadata, version.warmup) == (["baseline"], {"auc": 0.91}, False)
    assert (version.max_batch_size, version.preferred_batch_sizes, version.execution_provider) == (32, [8, 16], "cpu")
    assert version.size_bytes == len(data)

    services.run_validation(version.validation_jobs.get().pk)
    shown = viewer_api.get("/api/models/fraud/versions/1/")
    listed = viewer_api.get("/api/models/fraud/versions/")
    model = viewer_api.get("/api/models/fraud/")

    assert shown.status_code == 200
    body = shown.json()
    assert body["status"] == "ready"
    assert body["signature"]["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
    assert body["signature"]["batch_dim"] is True
    assert body["opset"] == 17
    assert body["producer"]
    assert body["sha256"] == version.sha256
    assert body["lineage"] == {
        "parent": None,
        "source_run_url": "https://mlflow.example.com/runs/42",
        "training_data": "s3://data/fraud/2024-06",
    }
    assert body["validation"]["status"] == "succeeded"
    assert body["validation"]["finished_at"] is not None
    assert listed.status_code == 200
    assert [v["number"] for v in listed.json()["results"]] == [1]
    assert model.json()["latest_version"] == 1
    version.refresh_from_db()
    assert version.status == VersionStatus.READY


def test_same_bytes_again_answer_200_with_the_existing_version(
    owner_api: APIClient, fraud: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    data = onnx_bytes()
    first = upload_and_validate(owner_api, "fraud", data, django_capture_on_commit_callbacks)

    again = upload(owner_api, "fraud", data)

    assert again.status_code == 200
    body = again.json()
    assert body["duplicate"] is True
    assert body["number"] == first.number
    assert body["detail"] == "these bytes are already version 1 of fraud"
    assert ModelVersion.objects.filter(model=fraud).count() == 1
    assert AuditEntry.objects.filter(action="version.uploaded").count() == 1


def test_parent_links_versions(
    owner_api: APIClient, fraud: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    upload_and_validate(owner_api, "fraud", onnx_bytes(0), django_capture_on_commit_callbacks)

    child = upload_and_validate(owner_api, "fraud", onnx_bytes(1), django_capture_on_commit_callbacks, parent="1")
    response = owner_api.get("/api/models/fraud/versions/2/")

    assert response.status_code == 200
    assert response.json()["lineage"]["parent"] == 1
    assert child.parent is not None
    assert child.parent.number == 1


# --- Changing a version ------------------------------------------------------------------------------------------


@pytest.fixture
def ready_version(
    owner_api: APIClient, fraud: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> ModelVersion:
    version = upload_and_validate(owner_api, "fraud", onnx_bytes(), django_capture_on_commit_callbacks)
    assert version.status == VersionStatus.READY
    return version


def test_patch_serving_settings_and_metadata(owner_api: APIClient, ready_version: ModelVersion) -> None:
    response = owner_api.patch(
        "/api/models/fraud/versions/1/",
        {
            "max_batch_size": 16,
            "preferred_batch_sizes": [4, 16],
            "max_queue_delay_ms": 5.5,
            "default_timeout_ms": 2000,
            "execution_provider": "cuda",
            "intra_op_threads": 2,
            "metadata": {"note": "tuned"},
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["max_batch_size"] == 16
    ready_version.refresh_from_db()
    assert ready_version.max_batch_size == 16
    assert ready_version.preferred_batch_sizes == [4, 16]
    assert ready_version.max_queue_delay_ms == 5.5
    assert ready_version.default_timeout_ms == 2000
    assert ready_version.execution_provider == "cuda"
    assert ready_version.intra_op_threads == 2
    assert ready_version.metadata == {"note": "tuned"}
    entry = AuditEntry.objects.get(action="version.updated")
    assert (entry.before["max_batch_size"], entry.after["max_batch_size"]) == (64, 16)


def test_patch_turns_the_response_cache_on_and_off(owner_api: APIClient, ready_version: ModelVersion) -> None:
    assert ready_version.cache_ttl_seconds == 0  # off unless asked for

    on = owner_api.patch("/api/models/fraud/versions/1/", {"cache_ttl_seconds": 300}, format="json")

    assert on.status_code == 200, on.content
    assert on.json()["cache_ttl_seconds"] == 300
    ready_version.refresh_from_db()
    assert ready_version.cache_ttl_seconds == 300
    entry = AuditEntry.objects.get(action="version.updated")
    assert (entry.before["cache_ttl_seconds"], entry.after["cache_ttl_seconds"]) == (0, 300)

    off = owner_api.patch("/api/models/fraud/versions/1/", {"cache_ttl_seconds": 0}, format="json")

    assert off.status_code == 200
    ready_version.refresh_from_db()
    assert ready_version.cache_ttl_seconds == 0
    assert owner_api.get("/api/models/fraud/versions/1/").json()["cache_ttl_seconds"] == 0


def test_an_over_long_cache_ttl_is_400_naming_the_limit(owner_api: APIClient, ready_version: ModelVersion) -> None:
    response = owner_api.patch("/api/models/fraud/versions/1/", {"cache_ttl_seconds": 10**7}, format="json")

    assert response.status_code == 400
    assert "604800" in response.json()["cache_ttl_seconds"][0]
    ready_version.refresh_from_db()
    assert ready_version.cache_ttl_seconds == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_size": 5000}, "max_batch_size"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms"),
        ({"max_queue_delay_ms": 10_001}, "max_queue_delay_ms"),
        ({"preferred_batch_sizes": [0]}, "preferred_batch_sizes"),
        ({"preferred_batch_sizes": [8, 128]}, "preferred_batch_sizes"),
        ({"preferred_batch_sizes": [8, 8]}, "preferred_batch_sizes"),
        ({"preferred_batch_sizes": "8"}, "preferred_batch_sizes"),
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"default_timeout_ms": 0}, "default_timeout_ms"),
        ({"default_timeout_ms": 600_001}, "default_timeout_ms"),
        ({"execution_provider": "tpu"}, "execution_provider"),
        ({"intra_op_threads": -1}, "intra_op_threads"),
        ({"intra_op_threads": 257}, "intra_op_threads"),
        ({"intra_op_threads": "two"}, "intra_op_threads"),
        ({"cache_ttl_seconds": -1}, "cache_ttl_seconds"),
        ({"cache_ttl_seconds": 7 * 24 * 3600 + 1}, "cache_ttl_seconds"),
        ({"cache_ttl_seconds": "ten"}, "cache_ttl_seconds"),
        ({"cache_ttl_seconds": 1.5}, "cache_ttl_seconds"),
        ({"cache_ttl_seconds": None}, "cache_ttl_seconds"),
        ({"source_run_url": "not a url"}, "source_run_url"),
    ],
)
def test_patch_with_an_invalid_serving_setting_is_400_and_changes_nothing(
    owner_api: APIClient, ready_version: ModelVersion, changes: dict[str, Any], field: str
) -> None:
    response = owner_api.patch("/api/models/fraud/versions/1/", changes, format="json")

    assert response.status_code == 400
    assert field in response.json()
    before = ModelVersion.objects.get(pk=ready_version.pk)
    assert (before.max_batch_size, before.preferred_batch_sizes, before.updated_at) == (
        ready_version.max_batch_size,
        ready_version.preferred_batch_sizes,
        ready_version.updated_at,
    )
    assert not AuditEntry.objects.filter(action="version.updated").exists()


def test_lowering_max_batch_size_below_the_preferred_sizes_is_400(
    owner_api: APIClient, ready_version: ModelVersion
) -> None:
    ModelVersion.objects.filter(pk=ready_version.pk).update(preferred_batch_sizes=[8, 32])

    response = owner_api.patch("/api/models/fraud/versions/1/", {"max_batch_size": 16}, format="json")

    assert response.status_code == 400
    assert "32" in response.json()["max_batch_size"][0]
    ready_version.refresh_from_db()
    assert ready_version.max_batch_size == 64


@pytest.mark.parametrize("field", ["sha256", "status", "signature", "number", "artifact"])
def test_patch_of_an_immutable_field_is_400(owner_api: APIClient, ready_version: ModelVersion, field: str) -> None:
    response = owner_api.patch("/api/models/fraud/versions/1/", {field: "0" * 64, "warmup": False}, format="json")

    assert response.status_code == 400
    assert "immutable" in response.json()[field][0]
    after = ModelVersion.objects.get(pk=ready_version.pk)
    assert (after.sha256, after.status, after.signature, after.number, after.artifact, after.warmup) == (
        ready_version.sha256,
        "ready",
        ready_version.signature,
        1,
        ready_version.artifact,
        True,
    )


def test_viewer_and_outsider_cannot_patch_a_version(
    viewer_api: APIClient, maintainer_api: APIClient, ready_version: ModelVersion
) -> None:
    by_viewer = viewer_api.patch("/api/models/fraud/versions/1/", {"max_batch_size": 8}, format="json")
    by_outsider = maintainer_api.patch("/api/models/fraud/versions/1/", {"max_batch_size": 8}, format="json")

    assert by_viewer.status_code == 403
    assert by_outsider.status_code == 403
    ready_version.refresh_from_db()
    assert ready_version.max_batch_size == 64


def test_empty_patch_says_what_can_change(owner_api: APIClient, ready_version: ModelVersion) -> None:
    response = owner_api.patch("/api/models/fraud/versions/1/", {}, format="json")

    assert response.status_code == 400
    assert "max_batch_size" in response.json()["non_field_errors"][0]
    assert not AuditEntry.objects.filter(action="version.updated").exists()


def test_unknown_version_is_404(viewer_api: APIClient, fraud: RegisteredModel) -> None:
    response = viewer_api.get("/api/models/fraud/versions/9/")

    assert response.status_code == 404
    assert not ModelVersion.objects.filter(model=fraud).exists()


def test_multipart_booleans_left_out_keep_their_default(owner_api: APIClient, fraud: RegisteredModel) -> None:
    form = {"file": SimpleUploadedFile("m.onnx", onnx_bytes(3)), "description": "no warmup field"}

    response = owner_api.post("/api/models/fraud/versions/", form, format="multipart")

    assert response.status_code == 201
    assert response.json()["warmup"] is True
    assert ModelVersion.objects.get(model=fraud, number=1).warmup is True

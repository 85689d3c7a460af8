"""Pipelines on the management API: `POST /api/models/` with `kind`, and pipeline versions made
of stages with a JSON body on `POST /api/models/{pipeline}/versions/`.

Personas (tests/conftest.py): `owner` (olga) made `chain` and the stage models, and maintains
them; `maintainer` (otto) maintains only `churn`; `viewer` (vic) reads only.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import services as keys
from audit.models import AuditEntry
from registry import services
from registry.models import ModelKind, ModelVersion, PipelineStage, RegisteredModel, VersionStatus
from registry.pipeline_services import StageSpec, create_pipeline_version
from tests.factories import RegisteredModelFactory
from tests.registry.helpers import onnx_bytes, upload
from tests.registry.steps import validate
from tests.support.clients import bearer

pytestmark = pytest.mark.django_db

VERSIONS = "/api/models/chain/versions/"


def two_stages(**second: Any) -> dict[str, Any]:
    """`scale` (st-scale v1, [-1, 4] -> [-1, 4]) then `widen` (st-widen v1, [-1, 4] -> [-1, 6])."""
    return {
        "stages": [
            {"name": "scale", "model": "st-scale", "version": 1, "inputs": {"x": "input.x"}, "timeout_ms": 250},
            {"name": "widen", "model": "st-widen", "version": 1, "inputs": {"x": "scale.y"}, **second},
        ]
    }


@pytest.fixture
def stage_models(owner: Any) -> list[RegisteredModel]:
    """`st-scale` and `st-widen` without versions: enough for refusals before any wiring."""
    return [RegisteredModelFactory(name=name, actor=owner) for name in ("st-scale", "st-widen")]


def no_pipeline_versions(pipeline: RegisteredModel) -> bool:
    return not ModelVersion.objects.filter(model=pipeline).exists() and not PipelineStage.objects.exists()


# --- Refusals first ------------------------------------------------------------------------------------------------


def test_viewer_cannot_create_a_pipeline_version(viewer_api: APIClient, pipeline: RegisteredModel) -> None:
    response = viewer_api.post(VERSIONS, two_stages(), format="json")

    assert response.status_code == 403
    assert "maintainers of model 'chain'" in response.json()["detail"]
    assert no_pipeline_versions(pipeline)


def test_a_maintainer_of_another_model_cannot_create_a_pipeline_version(
    maintainer_api: APIClient, pipeline: RegisteredModel
) -> None:
    response = maintainer_api.post(VERSIONS, two_stages(), format="json")

    assert response.status_code == 403
    assert no_pipeline_versions(pipeline)


def test_an_upload_to_a_pipeline_and_stages_to_a_model_are_refused_saying_what_each_takes(
    owner_api: APIClient, pipeline: RegisteredModel, fraud: RegisteredModel
) -> None:
    to_pipeline = upload(owner_api, "chain", onnx_bytes())
    to_model = owner_api.post("/api/models/fraud/versions/", two_stages(), format="json")

    assert to_pipeline.status_code == 400
    assert to_pipeline.json()["detail"].startswith("'chain' is a pipeline: its versions are made of stages")
    assert to_model.status_code == 400
    assert to_model.json()["detail"].startswith("'fraud' is a model: upload its versions as multipart/form-data")
    assert not ModelVersion.objects.exists()


def test_a_malformed_body_is_400_per_field_and_stores_nothing(owner_api: APIClient, pipeline: RegisteredModel) -> None:
    missing = owner_api.post(VERSIONS, {"description": "no stages"}, format="json")
    empty = owner_api.post(VERSIONS, {"stages": []}, format="json")
    too_many = owner_api.post(
        VERSIONS, {"stages": [{"name": f"s{i}", "model": "st-scale", "version": 1} for i in range(17)]}, format="json"
    )
    odd_stage = owner_api.post(
        VERSIONS,
        {"stages": [{"name": "scale", "model": "st-scale", "version": True, "timeout_ms": -1, "colour": "red"}]},
        format="json",
    )
    not_a_stage_field = owner_api.post(VERSIONS, {**two_stages(), "file": "x", "max_batch": 8}, format="json")

    assert missing.status_code == 400
    assert missing.json() == {"stages": ["This field is required."]}
    assert empty.status_code == 400
    assert empty.json()["stages"] == {"non_field_errors": ["This list may not be empty."]}
    assert too_many.status_code == 400
    assert "no more than 16" in str(too_many.json()["stages"])
    assert odd_stage.status_code == 400
    # DRF's shape for a list of objects: the index of each item at fault.
    assert odd_stage.json() == {
        "stages": {"0": {"colour": ["Unknown field. A stage has: name, model, version, inputs, timeout_ms."]}}
    }
    assert not_a_stage_field.status_code == 400
    assert not_a_stage_field.json()["file"] == [
        "A pipeline's versions are made of stages, not uploaded: send `stages` instead."
    ]
    assert "Unknown field" in not_a_stage_field.json()["max_batch"][0]
    assert no_pipeline_versions(pipeline)


def test_a_bad_version_or_timeout_of_a_stage_is_400_on_that_stage(
    owner_api: APIClient, pipeline: RegisteredModel
) -> None:
    response = owner_api.post(
        VERSIONS, {"stages": [{"name": "scale", "model": "st-scale", "version": True, "timeout_ms": -1}]}, format="json"
    )

    assert response.status_code == 400
    errors = response.json()["stages"]["0"]
    assert errors["version"] == [
        'Send a version number (e.g. 3) or the name of an alias of the model (e.g. "production").'
    ]
    assert errors["timeout_ms"] == ["Ensure this value is greater than or equal to 0."]
    assert no_pipeline_versions(pipeline)


def test_an_unknown_stage_model_version_or_alias_is_named_per_stage(
    owner_api: APIClient, pipeline: RegisteredModel, stage_models: list[RegisteredModel]
) -> None:
    body = {
        "stages": [
            {"name": "one", "model": "nope", "version": 1},
            {"name": "two", "model": "st-scale", "version": 7},
            {"name": "three", "model": "st-widen", "version": "staging"},
        ]
    }

    response = owner_api.post(VERSIONS, body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "stages": [
            "stage 'one': model 'nope' does not exist",
            "stage 'two': model 'st-scale' has no version 7",
            "stage 'three': model 'st-widen' has no alias 'staging'",
        ]
    }
    assert no_pipeline_versions(pipeline)


def test_stages_that_do_not_fit_are_refused_naming_the_stage_and_tensor_and_so_are_outputs(
    owner_api: APIClient, pipeline: RegisteredModel, scale_and_widen: dict[str, ModelVersion]
) -> None:
    body = {
        "stages": [
            {"name": "widen", "model": "st-widen", "version": 1},
            {"name": "again", "model": "st-widen", "version": 1, "inputs": {"x": "widen.y"}},
        ]
    }

    mismatch = owner_api.post(VERSIONS, body, format="json")
    no_such_output = owner_api.post(VERSIONS, {**two_stages(), "outputs": {"wide": "widen.z"}}, format="json")

    assert mismatch.status_code == 400
    assert mismatch.json() == {
        "stages": [
            "stage 'again' input 'x' (FP32 [-1, 4]) cannot take 'widen.y' (FP32 [-1, 6]): "
            "dimension 1 is 4 there, 6 here"
        ]
    }
    assert no_such_output.status_code == 400
    assert no_such_output.json() == {"outputs": ["pipeline output 'wide' reads 'widen.z', which no stage produces"]}
    assert no_pipeline_versions(pipeline)
    assert not AuditEntry.objects.filter(action="version.created").exists()


def test_an_archived_stage_version_or_a_pipeline_as_a_stage_is_refused(
    owner_api: APIClient, owner: Any, pipeline: RegisteredModel, scale_and_widen: dict[str, ModelVersion]
) -> None:
    create_pipeline_version(pipeline, [StageSpec("scale", scale_and_widen["scale"])], actor=owner)
    services.archive_version(scale_and_widen["widen"], actor=owner)
    services.create_model(name="outer", actor=owner, kind=ModelKind.PIPELINE)

    archived = owner_api.post(VERSIONS, two_stages(), format="json")
    inner = owner_api.post(
        "/api/models/outer/versions/", {"stages": [{"name": "inner", "model": "chain", "version": 1}]}, format="json"
    )

    assert archived.status_code == 400
    assert archived.json() == {
        "stages": ["stage 'widen': st-widen v1 is archived; only a ready version can be a stage"]
    }
    assert inner.status_code == 400
    assert inner.json() == {"stages": ["stage 'inner': a stage runs a model's version; pipelines do not nest"]}
    assert list(ModelVersion.objects.filter(model__kind=ModelKind.PIPELINE).values_list("number", flat=True)) == [1]


def test_a_key_limited_to_the_pipeline_cannot_build_on_models_outside_its_patterns(
    owner: Any, pipeline: RegisteredModel, stage_models: list[RegisteredModel], redis_client: Any
) -> None:
    _, secret = keys.create_key(owner, name="chain only", model_patterns=["chain"], actions=["manage"])
    client = APIClient()

    response = client.post(VERSIONS, two_stages(), format="json", headers=bearer(secret))

    assert response.status_code == 400
    assert response.json() == {
        "stages": [
            "stage 'scale': model 'st-scale' does not exist",
            "stage 'widen': model 'st-widen' does not exist",
        ]
    }
    assert no_pipeline_versions(pipeline)


def test_a_models_kind_cannot_change_and_must_be_known(owner_api: APIClient, pipeline: RegisteredModel) -> None:
    change = owner_api.patch("/api/models/chain/", {"kind": "model"}, format="json")
    unknown = owner_api.post("/api/models/", {"name": "odd", "kind": "ensemble"}, format="json")

    assert change.status_code == 400
    assert change.json() == {"kind": ["A model's kind cannot change: create a new model or pipeline instead."]}
    assert unknown.status_code == 400
    assert unknown.json() == {"kind": ['"ensemble" is not a valid choice.']}
    assert RegisteredModel.objects.get(name="chain").kind == ModelKind.PIPELINE
    assert not RegisteredModel.objects.filter(name="odd").exists()


# --- What works ----------------------------------------------------------------------------------------------------


def test_owner_creates_a_pipeline_and_models_say_their_kind(owner_api: APIClient, owner: Any) -> None:
    created = owner_api.post("/api/models/", {"name": "sentiment", "kind": "pipeline"}, format="json")
    plain = owner_api.post("/api/models/", {"name": "plain"}, format="json")
    pipelines_only = owner_api.get("/api/models/?kind=pipeline")

    assert created.status_code == 201
    assert created.json()["kind"] == "pipeline"
    assert plain.json()["kind"] == "model"
    assert [m["name"] for m in pipelines_only.json()["results"]] == ["sentiment"]
    assert RegisteredModel.objects.get(name="sentiment").kind == ModelKind.PIPELINE
    assert RegisteredModel.objects.get(name="plain").kind == ModelKind.MODEL
    assert AuditEntry.objects.get(action="model.created", object_repr="sentiment").after["kind"] == "pipeline"


def test_owner_creates_a_pipeline_version_that_validates_and_shows_its_stages_both_ways(
    owner_api: APIClient,
    viewer_api: APIClient,
    owner: Any,
    pipeline: RegisteredModel,
    scale_and_widen: dict[str, ModelVersion],
    django_capture_on_commit_callbacks: Any,
) -> None:
    stages = scale_and_widen
    services.set_alias(stages["widen"].model, "production", stages["widen"], actor=owner)
    body = two_stages(version="production")
    body.update(outputs={"wide": "widen.y", "scaled": "scale.y"}, description="two affine stages", max_batch_size=8)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = owner_api.post(VERSIONS, body, format="json")
    again = owner_api.post(VERSIONS, body, format="json")

    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["number"], data["status"], data["framework"], data["max_batch_size"]) == (1, "pending", "pipeline", 8)
    assert data["stages"] == [
        {
            "position": 0,
            "name": "scale",
            "model": "st-scale",
            "version": 1,
            "inputs": {"x": "input.x"},
            "timeout_ms": 250,
        },
        {
            "position": 1,
            "name": "widen",
            "model": "st-widen",
            "version": 1,
            "inputs": {"x": "scale.y"},
            "timeout_ms": 0,
        },
    ]
    assert data["pipeline_outputs"] == {"wide": "widen.y", "scaled": "scale.y"}
    assert len(callbacks) == 1  # the validation task, enqueued once the version commits
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["detail"] == "this definition is already version 1 of chain"
    version = ModelVersion.objects.get(model=pipeline)
    assert list(version.stages.order_by("position").values_list("name", "version_id")) == [
        ("scale", stages["scale"].pk),
        ("widen", stages["widen"].pk),  # the alias, resolved to the version it pointed at
    ]

    version = validate(version)
    shown = viewer_api.get(f"{VERSIONS}1/").json()
    used = viewer_api.get("/api/models/st-widen/versions/1/").json()

    assert version.status == VersionStatus.READY, version.status_reason
    assert shown["status"] == "ready"
    assert [s["name"] for s in shown["stages"]] == ["scale", "widen"]
    assert shown["signature"]["outputs"][0] == {"name": "wide", "datatype": "FP32", "shape": [-1, 6]}
    assert shown["used_by_pipelines"] == []
    assert used["stages"] == []
    assert used["pipeline_outputs"] is None
    assert used["used_by_pipelines"] == [{"pipeline": "chain", "version": 1, "status": "ready", "stage": "widen"}]


def test_a_pipeline_version_without_explicit_wiring_reads_client_inputs_and_answers_by_name(
    owner_api: APIClient, pipeline: RegisteredModel, scale_and_widen: dict[str, ModelVersion]
) -> None:
    response = owner_api.post(
        VERSIONS, {"stages": [{"name": "scale", "model": "st-scale", "version": 1}]}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["stages"][0]["inputs"] == {"x": "input.x"}
    assert response.json()["pipeline_outputs"] == {"y": "scale.y"}
    stored = ModelVersion.objects.get(model=pipeline)
    assert (stored.pipeline_output_map, stored.stages.get().inputs) == ({"y": "scale.y"}, {"x": "input.x"})


def test_a_key_limited_to_the_pipeline_does_not_see_which_other_pipelines_use_a_version(
    owner: Any,
    owner_api: APIClient,
    pipeline: RegisteredModel,
    scale_and_widen: dict[str, ModelVersion],
    redis_client: Any,
) -> None:
    assert owner_api.post(VERSIONS, two_stages(), format="json").status_code == 201
    _, secret = keys.create_key(owner, name="widen only", model_patterns=["st-*"], actions=["manage"])

    seen_by_key = APIClient().get("/api/models/st-widen/versions/1/", headers=bearer(secret))
    seen_by_owner = owner_api.get("/api/models/st-widen/versions/")

    assert seen_by_key.status_code == 200
    assert seen_by_key.json()["used_by_pipelines"] == []
    assert seen_by_owner.json()["results"][0]["used_by_pipelines"][0]["pipeline"] == "chain"
    assert PipelineStage.objects.filter(version=scale_and_widen["widen"]).count() == 1

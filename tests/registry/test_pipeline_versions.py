"""Pipeline versions in the registry: made of ready stage versions, refused when they do not
fit together, validated as a whole chain (a smoke run in a child process) before serving."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

from audit.models import AuditEntry
from registry import services
from registry.demo_models import _serialize
from registry.models import ModelKind, ModelVersion, PipelineStage, RegisteredModel, VersionStatus
from registry.pipeline_services import PipelineRefused, StageSpec, create_pipeline_version, pipelines_using
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.support.pipeline_models import build_affine


def validate(version: ModelVersion) -> ModelVersion:
    services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    return version


def test_a_mismatched_wiring_is_refused_at_creation_naming_stage_and_tensor(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    with pytest.raises(PipelineRefused) as caught:
        create_pipeline_version(
            pipeline,
            [StageSpec("first", stages["scale"]), StageSpec("second", stages["six"], {"x": "first.y"})],
            actor=owner,
        )
    assert (caught.value.stage, caught.value.tensor) == ("second", "x")
    assert "stage 'second' input 'x' (FP32 [-1, 6]) cannot take 'first.y'" in str(caught.value)
    assert not ModelVersion.objects.filter(model=pipeline).exists()


def test_a_stage_must_be_a_ready_version_of_a_model(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    services.archive_version(stages["scale"], actor=owner)
    stages["scale"].refresh_from_db()
    with pytest.raises(PipelineRefused, match="stage 'first': st-scale v1 is archived; only a ready version"):
        create_pipeline_version(pipeline, [StageSpec("first", stages["scale"])], actor=owner)
    other = services.create_model(name="chain-two", actor=owner, kind=ModelKind.PIPELINE)
    version = create_pipeline_version(other, [StageSpec("only", stages["widen"])], actor=owner).version
    with pytest.raises(PipelineRefused, match="pipelines do not nest"):
        create_pipeline_version(pipeline, [StageSpec("inner", version)], actor=owner)


def test_models_take_uploads_and_pipelines_take_stages(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    model = stages["scale"].model
    with pytest.raises(services.RegistryError, match="is a model, not a pipeline"):
        create_pipeline_version(model, [StageSpec("first", stages["widen"])], actor=owner)
    with pytest.raises(services.RegistryError, match="is a pipeline: its versions are made of stages"):
        services.upload_version(pipeline, io.BytesIO(build_affine(4, 1, 1)), actor=owner)


def test_a_pipeline_version_validates_as_a_whole_and_serves_its_wired_signature(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    result = create_pipeline_version(
        pipeline,
        [StageSpec("scale", stages["scale"], timeout_ms=250), StageSpec("widen", stages["widen"], {"x": "scale.y"})],
        actor=owner,
        outputs={"wide": "widen.y", "scaled": "scale.y"},
        max_batch_size=8,
    )
    assert result.created
    version = result.version
    assert (version.number, version.status, version.framework, version.artifact) == (1, "pending", "pipeline", "")
    rows = list(PipelineStage.objects.filter(pipeline_version=version).values_list("name", "version_id", "inputs"))
    assert rows == [("scale", stages["scale"].pk, {"x": "input.x"}), ("widen", stages["widen"].pk, {"x": "scale.y"})]
    entry = AuditEntry.objects.get(action="version.created")
    assert entry.after["stages"][0] == {
        "name": "scale",
        "version": "st-scale v1",
        "inputs": {"x": "input.x"},
        "timeout_ms": 250,
    }

    version = validate(version)
    assert version.status == VersionStatus.READY, version.status_reason
    assert version.signature == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "wide", "datatype": "FP32", "shape": [-1, 6]},
            {"name": "scaled", "datatype": "FP32", "shape": [-1, 4]},
        ],
        "batch_dim": True,
    }
    log = version.validation_jobs.get().log
    assert "wiring: 2 stages fit together" in log
    assert "smoke run at batch 8: ok (scale" in log
    assert [s.pipeline_version_id for s in pipelines_using(stages["widen"])] == [version.pk]


def test_the_same_definition_again_is_the_same_version_and_a_change_is_a_new_one(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    first = create_pipeline_version(pipeline, [StageSpec("scale", stages["scale"])], actor=owner)
    again = create_pipeline_version(pipeline, [StageSpec("scale", stages["scale"])], actor=owner)
    assert (again.created, again.version.pk) == (False, first.version.pk)
    changed = create_pipeline_version(pipeline, [StageSpec("scale", stages["scale"], timeout_ms=100)], actor=owner)
    assert changed.created
    assert changed.version.number == 2
    assert changed.version.parent_id == first.version.pk


def test_a_stage_version_in_use_cannot_be_archived(
    pipeline: RegisteredModel, stages: dict[str, ModelVersion], owner: Any
) -> None:
    create_pipeline_version(pipeline, [StageSpec("scale", stages["scale"])], actor=owner)
    with pytest.raises(services.RegistryError, match="is stage 'scale' of pipeline chain v1: archive that pipeline"):
        services.archive_version(stages["scale"], actor=owner)
    stages["scale"].refresh_from_db()
    assert stages["scale"].status == VersionStatus.READY


def test_a_chain_that_breaks_at_run_time_fails_validation_naming_the_stage(
    pipeline: RegisteredModel, owner: Any, artifact_root: Path
) -> None:
    # Declared [-1, -1] -> [-1, -1], the first stage really doubles the columns; the second needs exactly 4.
    graph = helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["y"], axis=1)],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "wide"])],
    )
    model = RegisteredModelFactory(name="st-double", actor=owner)
    double = ModelVersionFactory(model=model, actor=owner, onnx_bytes=_serialize(graph, 17), validate=True)
    four = ModelVersionFactory(
        model=RegisteredModelFactory(name="st-four", actor=owner),
        actor=owner,
        onnx_bytes=build_affine(4, 1, 0),
        validate=True,
    )
    version = create_pipeline_version(
        pipeline, [StageSpec("double", double), StageSpec("four", four, {"x": "double.y"})], actor=owner
    ).version
    version = validate(version)
    assert version.status == VersionStatus.FAILED
    assert "stage 'four' input 'x' declares [-1, 4] but 'double.y' gave [1, 2]" in version.status_reason

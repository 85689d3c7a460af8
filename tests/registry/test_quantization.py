"""Quantizing a ready version: what is refused, and the real conversions (in a child process)
of the demo models into new ready versions with lineage, or into a failed job that says why.

Personas: `owner` owns and maintains `iris` and `mlp`; `maintainer` is a viewer of them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError

from audit.models import AuditEntry
from registry import quantization, quantization_services, services
from registry.demo_models import build_iris_classifier, build_mlp_small
from registry.models import JobStatus, ModelVersion, QuantizationJob, RegisteredModel, VersionStatus
from registry.pipeline_services import StageSpec, create_pipeline_version
from registry.quantization_jobs import run_quantization
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.registry.steps import validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def mlp_small(owner: Any) -> ModelVersion:
    model = RegisteredModelFactory(name="mlp", actor=owner)
    version: ModelVersion = ModelVersionFactory(
        model=model, actor=owner, onnx_bytes=build_mlp_small(), validate=True, max_batch_size=32, tags=["demo"]
    )
    return version


def quantize(version: ModelVersion, method: str, actor: Any, capture: Any) -> QuantizationJob:
    """Start the job as the API would, then run it here as the worker would, and validate its result."""
    with capture(execute=False) as callbacks:
        job = quantization_services.start_quantization(version, method, actor=actor)
    assert len(callbacks) == 1  # the task, sent once the job row commits
    with capture(execute=False):
        finished = run_quantization(job.pk)
    assert finished is not None
    if finished.result is not None and finished.result.status == VersionStatus.PENDING:
        validate(finished.result)
    finished.refresh_from_db()
    return finished


# --- Refusals ----------------------------------------------------------------------------------------------------


def test_a_version_that_is_not_ready_is_refused(owner: Any, iris: RegisteredModel, onnx_bytes: bytes) -> None:
    version = ModelVersionFactory(model=iris, actor=owner, onnx_bytes=onnx_bytes)  # pending

    with pytest.raises(services.RegistryError, match="version 1 is pending: only a ready version"):
        quantization_services.start_quantization(version, "int8_dynamic", actor=owner)

    assert not QuantizationJob.objects.exists()


def test_an_unknown_method_is_refused(owner: Any, mlp_small: ModelVersion) -> None:
    with pytest.raises(services.RegistryError, match="unknown quantization method 'int4': use one of"):
        quantization_services.start_quantization(mlp_small, "int4", actor=owner)

    assert not QuantizationJob.objects.exists()


def test_a_pipeline_version_is_refused(
    owner: Any, pipeline: RegisteredModel, scale_and_widen: dict[str, ModelVersion]
) -> None:
    version = create_pipeline_version(pipeline, [StageSpec("scale", scale_and_widen["scale"])], actor=owner).version

    with pytest.raises(services.RegistryError, match="is a pipeline: quantize the versions its stages run"):
        quantization_services.start_quantization(version, "fp16", actor=owner)

    assert not QuantizationJob.objects.exists()


def test_the_same_method_twice_is_refused_naming_the_result(
    owner: Any, mlp_small: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    job = quantize(mlp_small, "fp16", owner, django_capture_on_commit_callbacks)
    assert job.result is not None

    with pytest.raises(services.RegistryError, match=f"the result is version {job.result.number}"):
        quantization_services.start_quantization(mlp_small, "fp16", actor=owner)

    assert QuantizationJob.objects.filter(version=mlp_small, method="fp16").count() == 1


def test_the_database_refuses_a_second_standing_job_for_the_same_method(owner: Any, mlp_small: ModelVersion) -> None:
    QuantizationJob.objects.create(version=mlp_small, method="int8_dynamic", status=JobStatus.FAILED)
    QuantizationJob.objects.create(version=mlp_small, method="int8_dynamic")

    with pytest.raises(IntegrityError):
        QuantizationJob.objects.create(version=mlp_small, method="int8_dynamic", status=JobStatus.RUNNING)


# --- Faults ------------------------------------------------------------------------------------------------------


def test_a_corrupted_artifact_fails_the_job_with_a_readable_reason(
    owner: Any, mlp_small: ModelVersion, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    (artifact_root / mlp_small.artifact).write_bytes(b"not an onnx model at all")

    job = quantize(mlp_small, "int8_dynamic", owner, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.FAILED
    assert job.result is None
    assert "no longer matches its sha256" in job.reason
    assert "restore it from a backup" in job.reason
    assert mlp_small.model.versions.count() == 1


def test_a_model_the_quantizer_cannot_handle_fails_the_job_saying_why(
    owner: Any, iris: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    # skl2onnx's LinearClassifier keeps its coefficients in attributes; dynamic INT8 has
    # nothing to quantize, and storing the same model again as "INT8" would be a lie.
    source = ModelVersionFactory(model=iris, actor=owner, onnx_bytes=build_iris_classifier(), validate=True)

    job = quantize(source, "int8_dynamic", owner, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.FAILED
    assert "no floating-point weight tensors" in job.reason
    assert "its operators: LinearClassifier, Normalizer" in job.reason
    assert job.reason.endswith("int8_dynamic would leave it unchanged")
    assert iris.versions.count() == 1


def test_the_converter_refuses_bytes_that_are_not_onnx(tmp_path: Path) -> None:
    source = tmp_path / "broken.onnx"
    source.write_bytes(b"\x08\x07garbage that protobuf half-reads")

    outcome = quantization.run_in_child(
        str(source), str(tmp_path / "out.onnx"), "fp16", timeout_s=60, memory_bytes=4 * 1024**3
    )

    assert not outcome.ok
    assert outcome.reason.startswith("the artifact is not a valid ONNX model")


# --- Conversions -------------------------------------------------------------------------------------------------


def test_int8_of_mlp_small_is_a_smaller_ready_child_version(
    owner: Any, mlp_small: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    job = quantize(mlp_small, "int8_dynamic", owner, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.SUCCEEDED, job.reason
    child = ModelVersion.objects.get(pk=job.result_id)
    assert child.status == VersionStatus.READY, child.status_reason
    assert child.parent_id == mlp_small.pk
    assert child.number == 2
    assert child.metadata == {
        "quantization": {"method": "int8_dynamic", "source_version": 1, "tool": quantization.TOOL}
    }
    assert child.size_bytes < mlp_small.size_bytes / 2
    assert child.signature == mlp_small.signature
    assert child.max_batch_size == 32
    assert child.tags == ["demo"]
    assert child.created_by == owner
    assert AuditEntry.objects.filter(action="version.quantization_started").count() == 1
    assert AuditEntry.objects.filter(action="version.quantized").count() == 1


def test_fp16_of_mlp_small_keeps_fp32_inputs_and_outputs(
    owner: Any, mlp_small: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    job = quantize(mlp_small, "fp16", owner, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.SUCCEEDED, job.reason
    child = ModelVersion.objects.get(pk=job.result_id)
    assert child.status == VersionStatus.READY, child.status_reason
    assert child.parent_id == mlp_small.pk
    assert child.metadata["quantization"]["method"] == "fp16"
    assert child.signature == mlp_small.signature  # FP32 in, FP32 out: clients change nothing
    assert child.size_bytes < mlp_small.size_bytes


def test_fp16_of_the_iris_classifier_fails_as_unchanged(
    owner: Any, iris: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    source = ModelVersionFactory(model=iris, actor=owner, onnx_bytes=build_iris_classifier(), validate=True)

    job = quantize(source, "fp16", owner, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.FAILED
    assert job.reason.endswith("fp16 would leave it unchanged")


def test_a_job_on_a_version_archived_meanwhile_fails_and_converts_nothing(
    owner: Any, mlp_small: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        job = quantization_services.start_quantization(mlp_small, "fp16", actor=owner)
    services.archive_version(mlp_small, actor=owner)

    run_quantization(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.reason == "version 1 is archived now, not ready: nothing was converted"
    assert mlp_small.model.versions.count() == 1


def test_bytes_the_model_already_has_are_reported_as_that_version(
    owner: Any, mlp_small: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    first = quantize(mlp_small, "int8_dynamic", owner, django_capture_on_commit_callbacks)
    assert first.result is not None
    # The same conversion again after its job row is gone: the upload service dedupes.
    QuantizationJob.objects.filter(pk=first.pk).update(status=JobStatus.FAILED)

    second = quantize(mlp_small, "int8_dynamic", owner, django_capture_on_commit_callbacks)

    assert second.status == JobStatus.SUCCEEDED
    assert second.result_id == first.result_id
    assert "already version 2: nothing new was stored" in second.progress
    assert mlp_small.model.versions.count() == 2


def test_upload_is_untouched_by_the_stream_position(owner: Any, iris: RegisteredModel, onnx_bytes: bytes) -> None:
    # upload_version rewinds the stream it is given; the job hands it an open file.
    stream = io.BytesIO(onnx_bytes)
    stream.seek(5)
    assert services.upload_version(iris, stream, actor=owner).version.size_bytes == len(onnx_bytes)

"""The management API's quantization endpoints: who may start one, what is refused, and
what the job reports. Personas: `owner` maintains `iris`; `maintainer` and `viewer` only read it."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from registry.models import JobStatus, ModelVersion, QuantizationJob, RegisteredModel, VersionStatus
from registry.quantization_jobs import run_quantization
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

QUANTIZE = "/api/models/iris/versions/1/quantize/"
JOBS = "/api/models/iris/versions/1/quantizations/"


@pytest.fixture
def ready(owner: Any, iris: RegisteredModel, onnx_bytes: bytes) -> ModelVersion:
    version: ModelVersion = ModelVersionFactory(model=iris, actor=owner, onnx_bytes=onnx_bytes, validate=True)
    return version


def test_a_viewer_may_not_quantize(viewer_api: APIClient, ready: ModelVersion) -> None:
    response = viewer_api.post(QUANTIZE, {"method": "int8_dynamic"}, format="json")

    assert response.status_code == 403
    assert not QuantizationJob.objects.exists()


def test_a_maintainer_of_another_model_may_not_quantize(maintainer_api: APIClient, ready: ModelVersion) -> None:
    response = maintainer_api.post(QUANTIZE, {"method": "fp16"}, format="json")

    assert response.status_code == 403
    assert not QuantizationJob.objects.exists()


def test_an_unknown_method_is_a_field_error(owner_api: APIClient, ready: ModelVersion) -> None:
    response = owner_api.post(QUANTIZE, {"method": "int4"}, format="json")

    assert response.status_code == 400
    assert "method" in response.json()
    assert not QuantizationJob.objects.exists()


def test_a_version_that_is_not_ready_is_refused(
    owner_api: APIClient, owner: Any, iris: RegisteredModel, onnx_bytes: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        ModelVersionFactory(model=iris, actor=owner, onnx_bytes=onnx_bytes)

    response = owner_api.post(QUANTIZE, {"method": "fp16"}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "version 1 is pending: only a ready version can be quantized"
    assert not QuantizationJob.objects.exists()


def test_an_unknown_version_is_404(owner_api: APIClient, ready: ModelVersion) -> None:
    response = owner_api.post("/api/models/iris/versions/9/quantize/", {"method": "fp16"}, format="json")

    assert response.status_code == 404
    assert not QuantizationJob.objects.exists()


def test_the_owner_starts_a_job_and_follows_it_to_the_new_version(
    owner_api: APIClient, viewer_api: APIClient, ready: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_api.post(QUANTIZE, {"method": "int8_dynamic"}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["method"] == "int8_dynamic"
    assert body["source_version"] == 1
    assert body["result_version"] is None
    assert len(callbacks) == 1
    job = QuantizationJob.objects.get(pk=body["id"])
    assert job.status == JobStatus.QUEUED
    assert job.actor is not None
    assert job.actor.username == "olga"

    with django_capture_on_commit_callbacks(execute=False):
        run_quantization(job.pk)
    listed = viewer_api.get(JOBS)

    assert listed.status_code == 200
    [shown] = listed.json()
    assert shown["status"] == "succeeded"
    assert shown["result_version"] == 2
    assert shown["result_status"] == VersionStatus.PENDING  # its validation follows
    assert ModelVersion.objects.get(model__name="iris", number=2).parent_id == ready.pk


def test_a_second_request_for_the_same_method_is_refused(
    owner_api: APIClient, ready: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        first = owner_api.post(QUANTIZE, {"method": "fp16"}, format="json")
        second = owner_api.post(QUANTIZE, {"method": "fp16"}, format="json")

    assert first.status_code == 202
    assert second.status_code == 400
    assert "is being quantized to FP16 already" in second.json()["detail"]
    assert QuantizationJob.objects.count() == 1

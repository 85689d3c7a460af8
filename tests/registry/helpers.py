"""Small helpers shared by the registry API tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.response import Response
from rest_framework.test import APIClient

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion


def onnx_bytes(seed: int = 0) -> bytes:
    """A real, valid ONNX model: FP32 [batch, 4] -> [batch, 2]; a new seed gives new bytes."""
    return build_mlp(4, [8], 2, seed=seed)


def upload(client: APIClient, model: str, data: bytes, **fields: Any) -> Response:
    form = {"file": SimpleUploadedFile("model.onnx", data, content_type="application/octet-stream"), **fields}
    return client.post(f"/api/models/{model}/versions/", form, format="multipart")


def upload_and_validate(
    client: APIClient, model: str, data: bytes, capture: Callable[..., Any], **fields: Any
) -> ModelVersion:
    """Upload through the API, then run the validation the Celery task would run after commit."""
    with capture(execute=False) as callbacks:
        response = upload(client, model, data, **fields)
    assert response.status_code == 201, response.content
    assert len(callbacks) == 1  # the validation task, enqueued once the upload commits
    version = ModelVersion.objects.get(model__name=model, number=response.json()["number"])
    services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    return version

"""The upload page: permissions and size limits first, then the whole path from a
browser upload to a ready version page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEntry
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from tests.registry.steps import browser_for, csrf_token, validate

pytestmark = pytest.mark.django_db

UPLOAD = "/models/iris/upload/"


class BodyMustNotBeRead:
    """A request body that fails the test if anything reads it."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the request body was read")

    readline = read


def test_viewer_gets_403_on_the_upload_page_and_no_version_is_created(
    iris: RegisteredModel, viewer: Any, onnx_bytes: bytes
) -> None:
    browser = browser_for(viewer)
    token = csrf_token(browser, "/models/iris/")

    page = browser.get(UPLOAD)
    post = browser.post(UPLOAD, {"file": SimpleUploadedFile("m.onnx", onnx_bytes), "csrfmiddlewaretoken": token})

    assert page.status_code == 403
    assert post.status_code == 403
    assert "ask olga to add you" in post.content.decode()
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_upload_without_csrf_token_is_refused(iris: RegisteredModel, owner: Any, onnx_bytes: bytes) -> None:
    response = browser_for(owner).post(UPLOAD, {"file": SimpleUploadedFile("m.onnx", onnx_bytes)})

    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_oversized_content_length_gets_413_before_the_body_is_read(
    iris: RegisteredModel, owner: Any, settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 1000}
    browser = browser_for(owner)
    csrf_token(browser, UPLOAD)

    response = browser.post(
        UPLOAD,
        data=b"",
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(10 * 1024**3),
        **{"wsgi.input": BodyMustNotBeRead()},
    )

    assert response.status_code == 413
    text = response.content.decode()
    assert "limit of 1000\xa0bytes (1000 bytes)" in text
    assert '<form id="upload-form"' in text
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_oversized_upload_as_htmx_gets_413_with_the_form_partial(
    iris: RegisteredModel, owner: Any, settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 1000}
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)
    big = SimpleUploadedFile("big.onnx", b"\0" * (200 * 1024))

    response = browser.post(UPLOAD, {"file": big}, headers={"HX-Request": "true", "X-CSRFToken": token})

    assert response.status_code == 413
    text = response.content.decode()
    assert "<html" not in text
    assert "limit of 1000\xa0bytes (1000 bytes)" in text
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_file_over_the_limit_within_the_form_allowance_is_refused_next_to_the_file_field(
    iris: RegisteredModel, owner: Any, settings: Any, onnx_bytes: bytes
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 100}
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)

    response = browser.post(UPLOAD, {"file": SimpleUploadedFile("m.onnx", onnx_bytes), "csrfmiddlewaretoken": token})

    assert response.status_code == 413
    assert f"The file is {len(onnx_bytes)} bytes, over the limit of 100 bytes" in response.content.decode()
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_missing_file_and_bad_url_are_reported_next_to_their_fields(iris: RegisteredModel, owner: Any) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)

    response = browser.post(UPLOAD, {"source_run_url": "not a url", "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    text = response.content.decode()
    assert "This field is required." in text
    assert "Enter a valid URL." in text
    assert not ModelVersion.objects.filter(model=iris).exists()


def test_upload_through_the_page_then_validation_shows_ready_and_the_signature(
    iris: RegisteredModel, owner: Any, onnx_bytes: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)
    form = {
        "file": SimpleUploadedFile("iris.onnx", onnx_bytes),
        "description": "first try",
        "source_run_url": "https://runs.example.com/42",
        "training_data": "s3://data/iris-v1",
        "csrfmiddlewaretoken": token,
    }

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(UPLOAD, form)

    assert response.status_code == 302
    assert response["Location"] == "/models/iris/versions/1/"
    assert len(callbacks) == 1  # the validation task, sent after commit
    version = ModelVersion.objects.get(model=iris, number=1)
    assert (version.status, version.size_bytes, version.created_by) == (VersionStatus.PENDING, len(onnx_bytes), owner)
    assert (version.description, version.training_data) == ("first try", "s3://data/iris-v1")
    assert AuditEntry.objects.filter(action="version.uploaded", object_id=str(version.pk)).exists()

    pending = browser.get(response["Location"])
    assert "Uploaded version 1" in pending.content.decode()
    assert 'hx-trigger="every 2s"' in pending.content.decode()

    assert validate(version).status == VersionStatus.READY
    ready = browser.get("/models/iris/versions/1/").content.decode()
    assert "Ready" in ready
    assert 'hx-trigger="every 2s"' not in ready
    assert "<code>input</code></td><td>FP32</td><td>[-1 (dynamic), 4]</td>" in ready
    assert "<code>output</code></td><td>FP32</td><td>[-1 (dynamic), 3]</td>" in ready
    assert "Batch dimension: yes" in ready
    assert '<a href="https://runs.example.com/42" rel="noopener noreferrer">' in ready
    assert "Job succeeded" in ready


def test_htmx_upload_redirects_with_hx_redirect(
    iris: RegisteredModel, owner: Any, onnx_bytes: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)

    with django_capture_on_commit_callbacks(execute=False):
        response = browser.post(
            UPLOAD,
            {"file": SimpleUploadedFile("iris.onnx", onnx_bytes)},
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/models/iris/versions/1/"
    assert ModelVersion.objects.filter(model=iris, number=1).exists()


def test_same_bytes_again_redirect_to_the_existing_version(
    iris: RegisteredModel,
    owner: Any,
    onnx_bytes: bytes,
    uploaded: Callable[[RegisteredModel, bytes], ModelVersion],
    django_capture_on_commit_callbacks: Any,
) -> None:
    first = uploaded(iris, onnx_bytes)
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(
            UPLOAD, {"file": SimpleUploadedFile("again.onnx", onnx_bytes), "csrfmiddlewaretoken": token}
        )

    assert response.status_code == 302
    assert response["Location"] == f"/models/iris/versions/{first.number}/"
    assert callbacks == []
    assert ModelVersion.objects.filter(model=iris).count() == 1
    page = browser.get(response["Location"]).content.decode()
    assert f"these bytes are already version {first.number}" in page


def test_parent_version_is_recorded_and_linked(
    iris: RegisteredModel,
    owner: Any,
    uploaded: Callable[[RegisteredModel, bytes], ModelVersion],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from registry.demo_models import build_mlp

    parent = uploaded(iris, build_mlp(4, [8], 3, seed=1))
    browser = browser_for(owner)
    token = csrf_token(browser, UPLOAD)
    child = SimpleUploadedFile("child.onnx", build_mlp(4, [8], 3, seed=2))

    with django_capture_on_commit_callbacks(execute=False):
        response = browser.post(UPLOAD, {"file": child, "parent": str(parent.number), "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    version = ModelVersion.objects.get(model=iris, number=2)
    assert version.parent == parent
    page = browser.get(response["Location"]).content.decode()
    assert f'<a href="/models/iris/versions/{parent.number}/">v{parent.number}</a>' in page

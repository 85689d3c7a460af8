"""The version page's quantization section: who sees the buttons, what a click starts, and
how the jobs and their results show. Personas: `owner` maintains `iris`; `viewer` reads only."""

from __future__ import annotations

from typing import Any

import pytest

from registry.models import JobStatus, ModelVersion, QuantizationJob, RegisteredModel
from registry.quantization_jobs import run_quantization
from tests.factories import ModelVersionFactory
from tests.registry.steps import browser_for, csrf_token

pytestmark = pytest.mark.django_db

PAGE = "/models/iris/versions/1/"
QUANTIZE = "/models/iris/versions/1/quantize/"


@pytest.fixture
def ready(owner: Any, iris: RegisteredModel, onnx_bytes: bytes) -> ModelVersion:
    version: ModelVersion = ModelVersionFactory(model=iris, actor=owner, onnx_bytes=onnx_bytes, validate=True)
    return version


def test_a_viewer_sees_no_buttons_and_may_not_post(viewer: Any, ready: ModelVersion) -> None:
    browser = browser_for(viewer)
    token = csrf_token(browser, PAGE)

    page = browser.get(PAGE).content.decode()
    response = browser.post(QUANTIZE, {"method": "fp16", "csrfmiddlewaretoken": token})

    assert "This version has not been quantized." in page
    assert "Quantize: INT8 dynamic" not in page
    assert response.status_code == 403
    assert not QuantizationJob.objects.exists()


def test_an_unknown_method_says_so_and_starts_nothing(owner: Any, ready: ModelVersion) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, PAGE)

    response = browser.post(QUANTIZE, {"method": "int4", "csrfmiddlewaretoken": token}, follow=True)

    assert response.status_code == 200
    assert "Not started: Unknown quantization method &#x27;int4&#x27;" in response.content.decode()
    assert not QuantizationJob.objects.exists()


def test_the_owner_quantizes_and_the_page_follows_the_job_to_the_new_version(
    owner: Any, ready: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, PAGE)
    assert "Quantize: INT8 dynamic" in browser.get(PAGE).content.decode()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(QUANTIZE, {"method": "int8_dynamic", "csrfmiddlewaretoken": token}, follow=True)

    assert response.status_code == 200
    assert len(callbacks) == 1
    job = QuantizationJob.objects.get()
    assert job.status == JobStatus.QUEUED
    queued = response.content.decode()
    assert "Quantizing version 1 to INT8 dynamic" in queued
    assert 'hx-trigger="every 2s"' in queued  # the body refreshes itself while the job runs

    with django_capture_on_commit_callbacks(execute=False):
        run_quantization(job.pk)
    body = browser.get(PAGE, headers={"HX-Request": "true"}).content.decode()

    assert '<a href="/models/iris/versions/2/">v2</a>' in body
    assert "created version 2; its validation follows" in body
    assert 'hx-trigger="every 2s"' in body  # v2 is still pending validation


def test_a_failed_job_shows_its_reason(owner: Any, ready: ModelVersion) -> None:
    QuantizationJob.objects.create(
        version=ready, method="fp16", status=JobStatus.FAILED, reason="the artifact is not a valid ONNX model"
    )

    page = browser_for(owner).get(PAGE).content.decode()

    assert '<span class="error">the artifact is not a valid ONNX model</span>' in page
    assert 'hx-trigger="every 2s"' not in page

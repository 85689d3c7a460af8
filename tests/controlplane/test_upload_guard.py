"""Oversized model uploads are refused from their Content-Length, before Django reads a byte."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "content_type", "phrase"),
    [
        ("/api/models/anything/versions/", "application/json", b'"detail":"The upload is'),
        ("/models/anything/upload/", "text/html; charset=utf-8", b"over the limit of 1000 bytes"),
    ],
)
def test_oversized_upload_is_413_before_the_body_is_read(
    gateway_client: AsgiClient, settings: Any, path: str, content_type: str, phrase: bytes
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 1000}
    huge = 1000 + 64 * 1024 + 1

    response = gateway_client.request("POST", path, headers={"content-length": str(huge)})

    assert response.status == 413
    assert response.headers["content-type"] == content_type
    assert phrase in response.body


def test_small_upload_reaches_django(gateway_client: AsgiClient) -> None:
    response = gateway_client.request("POST", "/api/models/anything/versions/", headers={"content-length": "10"})

    assert response.status == 403  # Django answered: anonymous callers may not upload


def test_a_json_body_to_the_versions_path_is_no_upload_and_has_the_body_limit(
    gateway_client: AsgiClient, settings: Any
) -> None:
    # A pipeline version's stages come as JSON: read into memory, so never the artifact's limit.
    settings.TURNOUT = {**settings.TURNOUT, "MAX_BODY_BYTES": 1000}

    response = gateway_client.request(
        "POST",
        "/api/models/anything/versions/",
        headers={"content-length": "1001", "content-type": "application/json", "authorization": "Bearer x"},
    )

    assert response.status == 413
    assert b"over the limit of 1000 bytes for a request body (TURNOUT_MAX_BODY_BYTES)" in response.body

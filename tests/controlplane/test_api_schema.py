"""The OpenAPI schema of the management API and its docs."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_schema_and_docs_render_for_a_signed_in_user(viewer_api: APIClient, anonymous_api: APIClient) -> None:
    schema = viewer_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = viewer_api.get("/api/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/models/{model_name}/versions/" in paths
    upload = paths["/api/models/{model_name}/versions/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"200", "201", "413"} <= upload["responses"].keys()
    assert "/api/audit/" in paths
    assert set(paths["/api/audit/{id}/"]) == {"get"}
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert AuditEntry.objects.count() == 0

"""A model's page: aliases, the versions table that follows validation, and the set-alias form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from audit.models import AuditEntry
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from tests.registry.steps import browser_for, csrf_token, validate

pytestmark = pytest.mark.django_db

POLLING = 'hx-trigger="every 2s"'
Upload = Callable[[RegisteredModel, bytes], ModelVersion]


def test_unknown_model_is_404(client: Client, viewer: Any) -> None:
    client.force_login(viewer)

    assert client.get("/models/nope/").status_code == 404
    assert client.get("/models/nope/versions/1/").status_code == 404


def test_empty_model_tells_a_maintainer_to_upload_and_a_viewer_who_can(
    client: Client, iris: RegisteredModel, owner: Any, viewer: Any
) -> None:
    client.force_login(owner)
    as_owner = client.get("/models/iris/").content.decode()
    client.force_login(viewer)
    as_viewer = client.get("/models/iris/").content.decode()

    assert '<a href="/models/iris/upload/">Upload an ONNX file</a>' in as_owner
    assert "none is ready yet" in as_owner
    assert "The owner or a maintainer of this model uploads them." in as_viewer
    assert "Set alias" not in as_viewer
    assert "No aliases yet." in as_viewer


def test_versions_partial_polls_while_pending_and_stops_once_ready(
    client: Client, viewer: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    version = uploaded(iris, onnx_bytes)
    client.force_login(viewer)
    htmx = {"HX-Request": "true"}

    pending_partial = client.get("/models/iris/", headers=htmx).content.decode()
    pending_version = client.get("/models/iris/versions/1/", headers=htmx).content.decode()
    validate(version)
    ready_partial = client.get("/models/iris/", headers=htmx).content.decode()
    ready_version = client.get("/models/iris/versions/1/", headers=htmx).content.decode()

    assert pending_partial.startswith('<div id="versions" hx-get="/models/iris/" ' + POLLING)
    assert "Pending" in pending_partial
    assert "<html" not in pending_partial
    assert POLLING in pending_version
    assert 'hx-get="/models/iris/versions/1/"' in pending_version
    assert ready_partial.startswith('<div id="versions">')
    assert "Ready" in ready_partial
    assert POLLING not in ready_partial
    assert POLLING not in ready_version
    assert version.sha256[:12] in ready_partial


def test_failed_version_shows_its_reason(client: Client, viewer: Any, iris: RegisteredModel, uploaded: Upload) -> None:
    version = validate(uploaded(iris, b"this is not an onnx model"))
    client.force_login(viewer)

    table = client.get("/models/iris/").content.decode()
    page = client.get("/models/iris/versions/1/").content.decode()

    assert version.status == VersionStatus.FAILED
    assert f"Failed</span>: {escape(version.status_reason)}" in table
    assert "No signature: the file did not pass validation." in page
    assert "Job failed" in page


def test_viewer_may_not_set_an_alias(viewer: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload) -> None:
    validate(uploaded(iris, onnx_bytes))
    browser = browser_for(viewer)
    token = csrf_token(browser, "/models/iris/")

    response = browser.post("/models/iris/", {"alias": "production", "version": "1", "csrfmiddlewaretoken": token})

    assert response.status_code == 403
    assert not Alias.objects.exists()


def test_alias_on_a_pending_version_is_refused_next_to_the_form(
    owner: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    from registry.demo_models import build_mlp

    validate(uploaded(iris, onnx_bytes))
    uploaded(iris, build_mlp(4, [8], 3, seed=5))
    browser = browser_for(owner)
    token = csrf_token(browser, "/models/iris/")

    response = browser.post("/models/iris/", {"alias": "production", "version": "2", "csrfmiddlewaretoken": token})
    bad_name = browser.post("/models/iris/", {"alias": "Prod!", "version": "1", "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    assert "Choose a ready version of this model." in response.content.decode()
    assert "Use 1-64 lowercase letters" in bad_name.content.decode()
    assert not Alias.objects.exists()


def test_set_alias_through_the_form_and_the_audit_page_shows_it(
    owner: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    version = validate(uploaded(iris, onnx_bytes))
    browser = browser_for(owner)
    token = csrf_token(browser, "/models/iris/")

    response = browser.post("/models/iris/", {"alias": "production", "version": "1", "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert response["Location"] == "/models/iris/"
    alias = Alias.objects.get(model=iris, name="production")
    assert alias.version == version
    entry = AuditEntry.objects.get(action="alias.created")
    assert (entry.actor_name, entry.after) == ("olga", {"version": 1})
    page = browser.get("/models/iris/").content.decode()
    assert "Alias &#x27;production&#x27; now points at version 1." in page
    assert '<tr><td>production</td><td><a href="/models/iris/versions/1/">v1</a></td>' in page
    audit = browser.get("/audit/", {"action": "alias.created"}).content.decode()
    assert "<code>alias.created</code>" in audit
    assert "iris@production" in audit
    assert "<code>version</code>: 1" in audit


def test_version_page_shows_metadata_lineage_and_serving_settings(
    client: Client, viewer: Any, owner: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    from registry import services

    version = validate(uploaded(iris, onnx_bytes))
    services.update_version(version, actor=owner, metadata={"accuracy": 0.97}, max_batch_size=32)
    # Older rows were stored without URL validation; the page must still not make this a link.
    ModelVersion.objects.filter(pk=version.pk).update(source_run_url="javascript:alert(1)")
    client.force_login(viewer)

    text = client.get("/models/iris/versions/1/").content.decode()

    assert "<pre>{\n  &quot;accuracy&quot;: 0.97\n}</pre>" in text
    assert 'href="javascript' not in text
    assert "<tr><th>Max batch size</th><td>32</td></tr>" in text
    assert "<tr><th>Parent</th><td>none</td></tr>" in text

"""No 5xx from client input on the Django side: NUL characters, huge page sizes, deep JSON.

PostgreSQL cannot store a NUL character (a DataError, so a 500 before this was fixed),
and Python's json module recursed once per nesting level. Every query parameter, path
parameter and form field of the API and the pages answers 400 naming the parameter.

Persona: `admin` (may do everything), so that nothing but the input is refused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from controlplane.rest import MAX_PAGE_SIZE
from registry import services as registry
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db

NUL = "a%00b"

# (path, the parameter named in the answer): every query and path parameter of the API.
API_GETS = [
    (f"/api/models/?q={NUL}", "q"),
    (f"/api/models/?tag={NUL}", "tag"),
    (f"/api/models/{NUL}/", "name"),
    (f"/api/models/{NUL}/versions/", "model_name"),
    (f"/api/models/{NUL}/versions/1/", "model_name"),
    (f"/api/models/{NUL}/aliases/", "model_name"),
    (f"/api/models/iris/aliases/{NUL}/", "alias"),
    (f"/api/rollouts/?model={NUL}", "model"),
    (f"/api/rollouts/?status={NUL}", "status"),
    (f"/api/rollouts/?kind={NUL}", "kind"),
    (f"/api/rollouts/{NUL}/", "pk"),
    (f"/api/audit/?object_type={NUL}", "object_type"),
    (f"/api/audit/?object_id={NUL}", "object_id"),
    (f"/api/audit/?action={NUL}", "action"),
    (f"/api/audit/?actor={NUL}", "actor"),
    (f"/api/audit/{NUL}/", "pk"),
    (f"/api/models/?limit={NUL}", "limit"),
]

# The pages': registry, rollouts, audit, accounts, dashboard.
PAGE_GETS = [
    (f"/models/?q={NUL}", "q"),
    (f"/models/{NUL}/", "name"),
    (f"/models/{NUL}/upload/", "name"),
    (f"/models/{NUL}/versions/1/", "name"),
    (f"/rollouts/?model={NUL}", "model"),
    (f"/rollouts/?page={NUL}", "page"),
    (f"/rollouts/new/{NUL}/", "name"),
    (f"/rollouts/new/iris/?kind={NUL}", "kind"),
    (f"/rollouts/models/{NUL}/section/", "name"),
    (f"/audit/?actor={NUL}", "actor"),
    (f"/audit/?action={NUL}", "action"),
    (f"/audit/?object_type={NUL}", "object_type"),
    (f"/audit/?object_id={NUL}", "object_id"),
    (f"/audit/?page={NUL}", "page"),
    (f"/?window={NUL}", "window"),
    (f"/dashboard/models/{NUL}/", "name"),
    (f"/dashboard/models/iris/?window={NUL}", "window"),
    (f"/login/?next={NUL}", "next"),
]

# Page forms, posted as a browser does (url-encoded) and as a script might (multipart).
PAGE_POSTS = [
    ("/models/new/", {"name": "a\x00b"}, "name"),
    ("/models/new/", {"name": "fine", "description": "a\x00b"}, "description"),
    ("/models/iris/", {"alias": "a\x00b", "version": "1"}, "alias"),
    ("/keys/new/", {"name": "k", "model_patterns": "a\x00b", "actions": ["infer"]}, "model_patterns"),
    ("/rollouts/new/iris/", {"kind": "a\x00b"}, "kind"),
    ("/rollouts/1/promote/", {"arm": "a\x00b"}, "arm"),
    ("/signup/", {"username": "a\x00b", "email": "a@example.com"}, "username"),
]


@pytest.fixture(autouse=True)
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return tmp_path


@pytest.fixture
def iris(admin: Any) -> RegisteredModel:
    return registry.create_model(name="iris", actor=admin)


@pytest.fixture
def api(admin: Any) -> APIClient:
    client = signed_in(admin, APIClient)
    client.raise_request_exception = False
    return client


@pytest.fixture
def browser(admin: Any) -> Client:
    client = signed_in(admin)
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize(("path", "parameter"), API_GETS)
def test_a_nul_in_an_api_parameter_is_400_naming_it(
    api: APIClient, iris: RegisteredModel, path: str, parameter: str
) -> None:
    entries = AuditEntry.objects.count()

    response = api.get(path)

    assert response.status_code == 400
    assert response.json() == {parameter: ["Null characters are not allowed."]}
    assert AuditEntry.objects.count() == entries


@pytest.mark.parametrize(("path", "parameter"), PAGE_GETS)
def test_a_nul_in_a_page_parameter_is_400_naming_it(
    browser: Client, iris: RegisteredModel, path: str, parameter: str
) -> None:
    response = browser.get(path)

    assert response.status_code == 400
    assert f" {parameter} contains a NUL character" in response.content.decode()


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
@pytest.mark.parametrize(("path", "form", "field"), PAGE_POSTS)
def test_a_nul_in_a_page_form_field_is_400_naming_it(
    browser: Client, iris: RegisteredModel, path: str, form: dict[str, Any], field: str, multipart: bool
) -> None:
    models = RegisteredModel.objects.count()
    if multipart:
        response = browser.post(path, form)
    else:
        body = urlencode(form, doseq=True)
        response = browser.post(path, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert f" {field} contains a NUL character" in response.content.decode()
    assert RegisteredModel.objects.count() == models


def test_a_nul_in_an_api_body_is_400_naming_the_field(api: APIClient, iris: RegisteredModel) -> None:
    created = api.post("/api/models/", {"name": "fine", "description": "a\x00b"}, format="json")
    started = api.post("/api/rollouts/", {"kind": "canary", "model": "a\x00b", "version": 1}, format="json")
    moved = api.put("/api/models/iris/aliases/production/", {"version": "1\x00"}, format="multipart")

    assert (created.status_code, created.json()) == (400, {"description": ["Null characters are not allowed."]})
    assert (started.status_code, started.json()) == (400, {"model": ["Null characters are not allowed."]})
    assert (moved.status_code, moved.json()) == (400, {"version": ["Null characters are not allowed."]})
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["iris"]


def test_a_nul_deep_in_json_metadata_is_400_not_a_database_error(
    api: APIClient, admin: Any, iris: RegisteredModel, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        version = registry.upload_version(iris, io.BytesIO(build_mlp(4, [8], 2)), actor=admin).version

    patched = api.patch("/api/models/iris/versions/1/", {"metadata": {"run": {"id": "a\x00b"}}}, format="json")
    escaped = '{"metadata": {"a\\u0000": 1}}'
    patched_key = api.patch("/api/models/iris/versions/1/", escaped, content_type="application/json")
    uploaded = api.post(
        "/api/models/iris/versions/",
        {
            "file": SimpleUploadedFile("m.onnx", build_mlp(4, [8], 2, seed=1)),
            "metadata": json.dumps({"note": "a\x00b"}),
        },
        format="multipart",
    )

    assert (patched.status_code, patched.json()) == (400, {"metadata": ["Null characters are not allowed."]})
    assert (patched_key.status_code, patched_key.json()) == (400, {"metadata": ["Null characters are not allowed."]})
    assert (uploaded.status_code, uploaded.json()) == (400, {"metadata": ["Null characters are not allowed."]})
    version.refresh_from_db()
    assert version.metadata == {}
    assert ModelVersion.objects.filter(model=iris).count() == 1


@pytest.mark.parametrize("path", ["/api/models/", "/api/rollouts/"])
def test_deeply_nested_json_is_400(api: APIClient, path: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    shallow_but_past_the_limit = json.dumps(
        {"name": "x", "tags": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
    )

    very = api.post(path, deep, content_type="application/json")
    past = api.post(path, shallow_but_past_the_limit, content_type="application/json")

    assert very.status_code == 400
    assert "JSON parse error" in very.json()["detail"]
    assert (past.status_code, past.json()) == (400, {"tags": ["Nested deeper than 32 levels."]})
    assert not RegisteredModel.objects.exists()


def test_a_nested_json_form_field_is_400(api: APIClient, iris: RegisteredModel) -> None:
    response = api.post(
        "/api/models/iris/versions/",
        {"file": SimpleUploadedFile("m.onnx", build_mlp(4, [8], 2)), "tags": "[" * 100_000 + "]" * 100_000},
        format="multipart",
    )

    assert response.status_code == 400
    assert list(response.json()) == ["tags"]
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("limit", [str(2**63), str(2**64 + 5), "99999999999"])
def test_a_huge_page_size_is_clamped_to_the_maximum(api: APIClient, admin: Any, limit: str) -> None:
    RegisteredModel.objects.bulk_create(
        RegisteredModel(name=f"m{i:04d}", owner=admin) for i in range(MAX_PAGE_SIZE + 1)
    )

    response = api.get(f"/api/models/?limit={limit}&offset={2**63}")
    first_page = api.get(f"/api/models/?limit={limit}")

    assert (response.status_code, response.json()["results"]) == (200, [])
    assert first_page.status_code == 200
    assert len(first_page.json()["results"]) == MAX_PAGE_SIZE
    assert first_page.json()["count"] == RegisteredModel.objects.count() == MAX_PAGE_SIZE + 1
    assert f"limit={MAX_PAGE_SIZE}" in first_page.json()["next"]
